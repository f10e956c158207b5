"""CT angiography aortic dissection analyzer: intimal flap, Stanford type, diameter (pure).

Each routed axial CT series (localizers, series without pixel spacing or with fewer than
eight slices skipped with the reason) is scored slice by slice (2.5D, angiographic and
soft-tissue windows). The network's outputs per slice are: an intimal flap anywhere, a flap
in the ascending aorta or arch, a flap in the descending aorta. Per series each is the mean
of its two most suspicious slices; the study takes the series most suspicious for a flap.
Stanford type A is the ascending-aorta output; type B is the descending-aorta output when
the ascending aorta is not involved (its probability is the smaller of "descending flap" and
"not ascending"), so a study is never both.

The maximum aortic diameter is measured from the images, whatever the network says: on each
slice the contrast-filled lumen (150-600 HU after a 3x3 median, the flap bridged by a
closing, holes filled, groups touching bone left out) is split into connected vessels, and
each vessel's diameter is that of its equal-area circle, or of the largest circle inscribed in
it where that is smaller (the short axis: an obliquely cut arch reads its width, not its
length). An estimate from the axial slices, to
the pixel; reported on the dissection finding, present or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydicom import Dataset
from scipy import ndimage

from models.analyzers.base import label_probabilities
from models.analyzers.series import SeriesAnalyzer, rank_slices, series_summary
from models.analyzers.volume import PreparedSeries, prepare_series, series_label, top_k_mean
from models.codes import DIAMETER, MILLIMETER
from models.labels import AORTIC_DISSECTION, STANFORD_TYPE_A, STANFORD_TYPE_B
from models.preprocess import NotAnalysable
from models.results import AnalysisResult, Finding, Heatmap, Measurement

TOP_K = 2
HEATMAP_SLICES = 2
LUMEN_HU = (150.0, 600.0)
BONE_HU = 650.0
MINIMUM_VESSEL_MM2 = 100.0


def max_aortic_diameter_mm(hounsfield: np.ndarray, pixel_spacing: tuple[float, float]) -> float:
    """The widest contrast-filled vessel's inscribed-circle diameter over all slices, in mm."""
    pixel = float(min(pixel_spacing))
    widest = 0.0
    for plane in hounsfield:
        smooth = ndimage.median_filter(plane, size=3)
        lumen = (smooth >= LUMEN_HU[0]) & (smooth <= LUMEN_HU[1])
        lumen = ndimage.binary_fill_holes(ndimage.binary_closing(lumen, iterations=2))
        bone = ndimage.binary_dilation(smooth > BONE_HU, iterations=2)
        labels, count = ndimage.label(lumen)
        if not count:
            continue
        touching = set(np.unique(labels[bone]).tolist())
        distance = ndimage.distance_transform_edt(lumen)
        for index in range(1, count + 1):
            vessel = labels == index
            if index in touching or vessel.sum() * pixel * pixel < MINIMUM_VESSEL_MM2:
                continue
            area = float(vessel.sum())
            inscribed = 2.0 * float(distance[vessel].max()) + 1.0
            widest = max(widest, min(inscribed, 2.0 * np.sqrt(area / np.pi)) * pixel)
    return widest


class AorticDissectionAnalyzer(SeriesAnalyzer):
    kind: ClassVar[str] = "cta-aortic-dissection"
    required_labels: ClassVar[tuple[str, ...]] = (
        AORTIC_DISSECTION,
        STANFORD_TYPE_A,
        STANFORD_TYPE_B,
    )
    minimum_slices: ClassVar[int] = 8
    series_name: ClassVar[str] = "axial CT angiography series"

    def series_header_problem(self, members: Sequence[Dataset]) -> str | None:
        return None

    def prepare_one(self, members: list[Dataset]) -> PreparedSeries:
        series = prepare_series(members, self.manifest.input, keep_hounsfield=True)
        if series.frames[0].pixel_spacing is None:
            raise NotAnalysable(
                f"{series_label(members)} has no Pixel Spacing: the aortic diameter cannot "
                "be measured"
            )
        return series

    def _analyze(self, datasets: list[Dataset]) -> AnalysisResult:
        series, skipped = self.usable_series(datasets)
        evaluated = []
        for item in series:
            per_slice = label_probabilities(self.manifest, self.logits(item.inputs))
            per_series = {name: top_k_mean(values, TOP_K) for name, values in per_slice.items()}
            per_series[STANFORD_TYPE_B] = min(
                per_series[STANFORD_TYPE_B], 1.0 - per_series[STANFORD_TYPE_A]
            )
            frame = item.frames[0]
            assert frame.pixel_spacing is not None and item.hounsfield is not None
            diameter = max_aortic_diameter_mm(item.hounsfield, frame.pixel_spacing)
            evaluated.append((item, per_slice, per_series, diameter))
        best, per_slice, per_series, diameter = max(
            evaluated, key=lambda entry: entry[2][AORTIC_DISSECTION]
        )
        findings: list[Finding] = []
        heatmaps: list[Heatmap] = []
        for name in self.required_labels:
            label = self.manifest.label(name)
            probability = per_series[name]
            ranked, referenced = rank_slices(per_slice[name], label.threshold, TOP_K)
            measurements = (
                [Measurement(DIAMETER, round(diameter, 1), MILLIMETER)]
                if name == AORTIC_DISSECTION and diameter > 0
                else []
            )
            finding = self.finding(
                label, probability, [best.frames[i].reference for i in referenced], measurements
            )
            findings.append(finding)
            if finding.present:
                heatmaps.extend(self.slice_heatmaps(best, label, ranked[:HEATMAP_SLICES]))
        return self.analysed(
            findings,
            heatmaps,
            [frame.reference for item in series for frame in item.frames],
            {
                "series": [
                    {
                        **series_summary(item),
                        "probabilities": {name: round(p, 6) for name, p in probabilities.items()},
                        "max_aortic_diameter_mm": round(series_diameter, 1),
                        "slice_probabilities": [
                            round(float(p), 4) for p in slices[AORTIC_DISSECTION]
                        ],
                    }
                    for item, slices, probabilities, series_diameter in evaluated
                ],
                "diameter_method": (
                    "largest inscribed circle of the contrast-filled lumen (150-600 HU), per "
                    "axial slice"
                ),
                "stanford": "A: ascending aorta or arch involved; B: descending aorta only",
                "aggregation": f"mean of the top {TOP_K} slice probabilities per label",
                "skipped": [entry.to_json() for entry in skipped],
            },
        )
