"""Non-contrast head CT acute ischemic stroke analyzer: early ischemic change, dense vessel
sign, infarct volume and ASPECTS-style regions (pure).

Series selection and preparation are the haemorrhage analyzer's (axial non-contrast CT,
localizers and contrast-enhanced series skipped; three windows, 2.5D): the network scores
every slice for early ischemic change (a hypodense territory, grey-white differentiation
lost) and for a dense middle cerebral artery. Per series and label the probability is the
mean of the two most suspicious slices; the study takes the series most suspicious for
stroke. The infarct voxels (12-24 HU in the cranial cavity after a 5x5 median, groups of at
least 30) on the flagged slices give the volume in mL and the regional score
(:mod:`models.analyzers.stroke`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydicom import Dataset
from scipy import ndimage

from models.analyzers.base import label_probabilities
from models.analyzers.head_ct_ich import HeadCtHemorrhageAnalyzer
from models.analyzers.series import series_summary
from models.analyzers.stroke import aspects, flagged_slices, keep_groups, stroke_findings
from models.analyzers.volume import PreparedSeries
from models.labels import DENSE_VESSEL_SIGN, ISCHEMIC_STROKE
from models.results import AnalysisResult

INFARCT_HU = (12.0, 24.0)
MINIMUM_GROUP = 30


def cavity_masks(hounsfield: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(brain, infarct-density) masks per slice: inside the bone ring, after a 5x5 median."""
    brain = np.zeros(hounsfield.shape, dtype=bool)
    hypodense = np.zeros(hounsfield.shape, dtype=bool)
    for index, plane in enumerate(hounsfield):
        bone = plane > 300
        cavity = ndimage.binary_erosion(ndimage.binary_fill_holes(bone) & ~bone, iterations=2)
        smooth = ndimage.median_filter(plane, size=5)
        brain[index] = cavity & (smooth > 0) & (smooth < 60)
        hypodense[index] = cavity & (smooth >= INFARCT_HU[0]) & (smooth <= INFARCT_HU[1])
    return brain, hypodense


class HeadCtStrokeAnalyzer(HeadCtHemorrhageAnalyzer):
    kind: ClassVar[str] = "head-ct-stroke"
    required_labels: ClassVar[tuple[str, ...]] = (ISCHEMIC_STROKE, DENSE_VESSEL_SIGN)

    def _analyze(self, datasets: list[Dataset]) -> AnalysisResult:
        series, skipped = self.usable_series(datasets)
        threshold = self.manifest.label(ISCHEMIC_STROKE).threshold
        evaluated = []
        for item in series:
            per_slice = label_probabilities(self.manifest, self.logits(item.inputs))
            assert item.hounsfield is not None
            brain, hypodense = cavity_masks(item.hounsfield)
            flagged = flagged_slices(per_slice[ISCHEMIC_STROKE], threshold)
            infarct = keep_groups(hypodense & flagged[:, None, None], MINIMUM_GROUP)
            evaluated.append((item, per_slice, brain, infarct))

        def suspicion(entry: tuple[PreparedSeries, dict[str, np.ndarray], object, object]) -> float:
            return float(np.sort(entry[1][ISCHEMIC_STROKE])[-2:].mean())

        best, per_slice, brain, infarct = max(evaluated, key=suspicion)
        regional = aspects(best, brain, infarct)
        findings, heatmaps, probabilities = stroke_findings(
            self, best, per_slice, infarct, regional, self.required_labels
        )
        return self.analysed(
            findings,
            heatmaps,
            [frame.reference for item in series for frame in item.frames],
            {
                "series": [
                    {
                        **series_summary(best),
                        "probabilities": {k: round(v, 6) for k, v in probabilities.items()},
                        "slice_probabilities": [
                            round(float(p), 4) for p in per_slice[ISCHEMIC_STROKE]
                        ],
                    }
                ],
                "aspects": regional.to_json(),
                "volume_method": (
                    "12-24 HU voxels (5x5 median, groups >= 30) in the cranial cavity on "
                    "flagged slices"
                ),
                "aggregation": "mean of the top 2 slice probabilities per label",
                "skipped": [entry.to_json() for entry in skipped],
            },
        )
