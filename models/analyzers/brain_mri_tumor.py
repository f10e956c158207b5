"""Brain MRI tumour analyzer: one series chosen by sequence, every slice scored (pure).

The study's MR series are classified by sequence from their headers
(:mod:`models.analyzers.mr_sequence`). The package's manifest names the sequences its network
was trained on (``sequences``, preferred first); only a series of one of those is read, and a
study with none is not analysable, with the sequences it has and the ones the model needs in
the reason (a FLAIR is no post-contrast T1, whatever a network trained on the one would say
about the other). A package that declares nothing gets the default order FLAIR, T2,
post-contrast T1, T1, unidentified. The first series that passes the header checks (intended
modality and body part, not a localizer, at least 16 slices; 2D multi-slice and 3D volumes
alike) and prepares as an axial stack is the one analysed. Diffusion, SWI, perfusion,
angiography and derived maps are never read. Each slice with its neighbours (2.5D) goes
through the network in batches; the series' probability is the mean of its three most
suspicious slices (one noisy slice does not make a tumour). The finding references the slices
at or above the threshold (the most probable first), and the three most probable slices get
heatmaps.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydicom import Dataset

from models.analyzers.base import Skipped, label_probabilities, nothing_to_analyse
from models.analyzers.mr_sequence import PREFERENCE, MrSequence, RankedSeries, rank_series
from models.analyzers.series import SeriesAnalyzer, rank_slices, series_summary
from models.analyzers.volume import PreparedSeries, series_label, top_k_mean
from models.labels import BRAIN_TUMOR as TUMOR
from models.preprocess import group_by_series, image_reference
from models.results import AnalysisResult

TOP_K = 3
HEATMAP_SLICES = 3


class BrainMriTumorAnalyzer(SeriesAnalyzer):
    kind: ClassVar[str] = "brain-mri-tumor"
    required_labels: ClassVar[tuple[str, ...]] = (TUMOR,)
    minimum_slices: ClassVar[int] = 16
    series_name: ClassVar[str] = "axial MR series"

    @property
    def sequence_order(self) -> tuple[MrSequence, ...]:
        """The sequences this package reads, preferred first: those its manifest declares it
        was trained on, else the default order."""
        declared = self.manifest.sequences
        return tuple(MrSequence(name) for name in declared) if declared else PREFERENCE

    def select(
        self, datasets: list[Dataset]
    ) -> tuple[PreparedSeries | None, RankedSeries | None, list[RankedSeries], list[Skipped]]:
        """The series to read (prepared), its sequence call, every call, and what was left out."""
        order = self.sequence_order
        groups = group_by_series(datasets)
        ranked = rank_series(groups, order)
        skipped: list[Skipped] = []
        candidates = []
        for entry in ranked:
            members = groups[entry.series_instance_uid]
            if entry.call.sequence is MrSequence.EXCLUDED:
                reason = f"{series_label(members)}: not read ({entry.call.evidence})"
                skipped.append(Skipped(image_reference(members[0]), reason))
                continue
            if entry.call.sequence not in order:
                reason = (
                    f"{series_label(members)}: {entry.call.sequence.value} is not a sequence "
                    f"this model was trained on ({', '.join(s.value for s in order)})"
                )
                skipped.append(Skipped(image_reference(members[0]), reason))
                continue
            problem = self.members_problem(members)
            if problem is not None:
                skipped.append(Skipped(image_reference(members[0]), problem))
                continue
            candidates.append(entry)
        for entry in candidates:
            outcome = self.try_prepare(groups[entry.series_instance_uid])
            if isinstance(outcome, Skipped):
                skipped.append(outcome)
                continue
            return outcome, entry, ranked, skipped
        return None, None, ranked, skipped

    def _analyze(self, datasets: list[Dataset]) -> AnalysisResult:
        best, chosen, ranked, skipped = self.select(datasets)
        if best is None or chosen is None:
            raise nothing_to_analyse(self.series_name, skipped)
        label = self.manifest.label(TUMOR)
        per_slice = label_probabilities(self.manifest, self.logits(best.inputs))[TUMOR]
        probability = top_k_mean(per_slice, TOP_K)
        ranked_slices, referenced = rank_slices(per_slice, label.threshold, TOP_K)
        finding = self.finding(label, probability, [best.frames[i].reference for i in referenced])
        heatmaps = (
            self.slice_heatmaps(best, label, ranked_slices[:HEATMAP_SLICES])
            if finding.present
            else []
        )
        sequences: list[dict[str, Any]] = [
            {"series_instance_uid": entry.series_instance_uid, **entry.call.to_json()}
            for entry in ranked
        ]
        return self.analysed(
            [finding],
            heatmaps,
            [frame.reference for frame in best.frames],
            {
                "series": [
                    {
                        **series_summary(best),
                        **chosen.call.to_json(),
                        "probability": round(probability, 6),
                        "slice_probabilities": [round(float(p), 4) for p in per_slice],
                    }
                ],
                "selection": "by sequence: "
                + ", then ".join(sequence.value for sequence in self.sequence_order)
                + (" (declared by the package)" if self.manifest.sequences else ""),
                "sequences": sequences,
                "aggregation": f"mean of the top {TOP_K} slice probabilities",
                "skipped": [item.to_json() for item in skipped],
            },
        )
