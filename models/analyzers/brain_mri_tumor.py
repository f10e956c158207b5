"""Brain MRI tumour analyzer: every slice scored, the study decided by the slices (pure).

Each routed MR series (localizers and series under the minimum slice count skipped with the
reason) is ordered by Image Position (Patient) and scaled by its tissue median; every slice
with its neighbours (2.5D) goes through the network in batches. A series' probability is the
mean of its three most suspicious slices (one noisy slice does not make a tumour); the study
takes the most suspicious series. The finding references the slices at or above the
threshold (the most probable first), and the three most probable slices get heatmaps.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydicom import Dataset

from models.analyzers.base import BaseAnalyzer, Skipped, label_probabilities
from models.analyzers.volume import PreparedSeries, prepare_series, series_problem, top_k_mean
from models.labels import BRAIN_TUMOR as TUMOR
from models.preprocess import NotAnalysable, group_by_series, image_reference
from models.results import AnalysisResult, Heatmap

TOP_K = 3
MAX_REFERENCED_SLICES = 12
HEATMAP_SLICES = 3
MINIMUM_SLICES = 16


class BrainMriTumorAnalyzer(BaseAnalyzer):
    kind: ClassVar[str] = "brain-mri-tumor"
    required_labels: ClassVar[tuple[str, ...]] = (TUMOR,)

    def prepare(self, datasets: list[Dataset]) -> tuple[list[PreparedSeries], list[Skipped]]:
        prepared: list[PreparedSeries] = []
        skipped: list[Skipped] = []
        for members in group_by_series(datasets).values():
            problem = self.header_problem(members[0]) or series_problem(members, MINIMUM_SLICES)
            if problem is not None:
                skipped.append(Skipped(image_reference(members[0]), problem))
                continue
            try:
                prepared.append(prepare_series(members, self.manifest.input))
            except NotAnalysable as reason:
                skipped.append(Skipped(image_reference(members[0]), reason.reason))
        return prepared, skipped

    def _analyze(self, datasets: list[Dataset]) -> AnalysisResult:
        series, skipped = self.prepare(datasets)
        if not series:
            reasons = "; ".join(item.reason for item in skipped) or "no images were given"
            raise NotAnalysable(f"no axial MR series to analyse: {reasons}")
        label = self.manifest.label(TUMOR)
        scored = []
        for item in series:
            per_slice = label_probabilities(self.manifest, self.logits(item.inputs))[TUMOR]
            scored.append((top_k_mean(per_slice, TOP_K), item, per_slice))
        probability, best, per_slice = max(scored, key=lambda entry: entry[0])
        ranked = [int(i) for i in np.argsort(-per_slice)]
        above = [i for i in ranked if per_slice[i] >= label.threshold][:MAX_REFERENCED_SLICES]
        finding = self.finding(
            label,
            probability,
            [best.frames[i].reference for i in (above or ranked[:TOP_K])],
        )
        heatmaps = []
        if finding.present:
            for index in ranked[:HEATMAP_SLICES]:
                maps = self.gradcam(best.inputs[index : index + 1], [label])
                heatmaps.append(
                    Heatmap(
                        TUMOR, best.frames[index].reference, best.geometry.to_image(maps[TUMOR][0])
                    )
                )
        return AnalysisResult(
            analyzer=self.name,
            model=self.identity,
            status="analysed",
            findings=(finding,),
            heatmaps=tuple(heatmaps),
            analysed_images=tuple(frame.reference for item in series for frame in item.frames),
            extra={
                "series": [
                    {
                        "series_instance_uid": item.series_instance_uid,
                        "slices": len(item.frames),
                        "slice_spacing_mm": round(item.stack.spacing, 3),
                        "probability": round(value, 6),
                        "slice_probabilities": [round(float(p), 4) for p in probabilities],
                    }
                    for value, item, probabilities in scored
                ],
                "aggregation": f"mean of the top {TOP_K} slice probabilities",
                "skipped": [item.to_json() for item in skipped],
            },
        )
