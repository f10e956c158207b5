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

from pydicom import Dataset

from models.analyzers.base import label_probabilities
from models.analyzers.series import SeriesAnalyzer, rank_slices, series_summary
from models.analyzers.volume import top_k_mean
from models.labels import BRAIN_TUMOR as TUMOR
from models.results import AnalysisResult

TOP_K = 3
HEATMAP_SLICES = 3


class BrainMriTumorAnalyzer(SeriesAnalyzer):
    kind: ClassVar[str] = "brain-mri-tumor"
    required_labels: ClassVar[tuple[str, ...]] = (TUMOR,)
    minimum_slices: ClassVar[int] = 16
    series_name: ClassVar[str] = "axial MR series"

    def _analyze(self, datasets: list[Dataset]) -> AnalysisResult:
        series, skipped = self.usable_series(datasets)
        label = self.manifest.label(TUMOR)
        scored = []
        for item in series:
            per_slice = label_probabilities(self.manifest, self.logits(item.inputs))[TUMOR]
            scored.append((top_k_mean(per_slice, TOP_K), item, per_slice))
        probability, best, per_slice = max(scored, key=lambda entry: entry[0])
        ranked, referenced = rank_slices(per_slice, label.threshold, TOP_K)
        finding = self.finding(label, probability, [best.frames[i].reference for i in referenced])
        heatmaps = (
            self.slice_heatmaps(best, label, ranked[:HEATMAP_SLICES]) if finding.present else []
        )
        return self.analysed(
            [finding],
            heatmaps,
            [frame.reference for item in series for frame in item.frames],
            {
                "series": [
                    {
                        **series_summary(item),
                        "probability": round(value, 6),
                        "slice_probabilities": [round(float(p), 4) for p in probabilities],
                    }
                    for value, item, probabilities in scored
                ],
                "aggregation": f"mean of the top {TOP_K} slice probabilities",
                "skipped": [item.to_json() for item in skipped],
            },
        )
