"""Non-contrast head CT haemorrhage analyzer: type per series, volume in mL (pure).

Each routed CT series (localizers, contrast-enhanced series, series without pixel spacing or
with fewer than three slices skipped with the reason) is ordered by Image Position
(Patient); every slice with its two neighbours, each in brain (40/80), subdural (80/200)
and bone (600/2800) windows, makes a 9-channel 2.5D input. Per series and label the
probability is the mean of the two most suspicious slices; the study takes the series with
the highest haemorrhage probability. "Mixed" is derived: two or more types present.

The volume estimate, for comparison with priors, counts blood-density voxels (50-100 HU after
a 3x3 median filter, in connected groups of at least 8) inside the cranial cavity (enclosed
by bone) on the slices the model flags and their neighbours, times the voxel volume: an
estimate, stated as such. Partial volume of the inner table (bone mixed into a brain voxel
can read 50-100 HU) is not modelled by the phantoms; on real scans it adds a thin rim.
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
from models.codes import MILLILITER, VOLUME
from models.labels import ANY_HEMORRHAGE as ANY
from models.labels import HEMORRHAGE_SUBTYPES as SUBTYPES
from models.preprocess import NotAnalysable
from models.results import AnalysisResult, Finding, Heatmap, Measurement

TOP_K = 2
MINIMUM_SLICES = 3
ANY_HEATMAP_SLICES = 3
BLOOD_HU = (50.0, 100.0)
MINIMUM_COMPONENT_VOXELS = 8


def hemorrhage_volume_ml(
    hounsfield: np.ndarray,
    flagged: np.ndarray,
    pixel_spacing: tuple[float, float],
    slice_spacing: float,
) -> float:
    """Blood-density voxels in the cranial cavity on ``flagged`` slices, in mL."""
    total = 0
    for index in np.flatnonzero(flagged):
        plane = hounsfield[index]
        bone = plane > 300
        cavity = ndimage.binary_fill_holes(bone) & ~bone
        smooth = ndimage.median_filter(plane, size=3)
        blood = cavity & (smooth >= BLOOD_HU[0]) & (smooth <= BLOOD_HU[1])
        labels, count = ndimage.label(blood)
        if count:
            sizes = np.bincount(labels.ravel())[1:]
            total += int(sizes[sizes >= MINIMUM_COMPONENT_VOXELS].sum())
    return total * pixel_spacing[0] * pixel_spacing[1] * slice_spacing / 1000.0


class HeadCtHemorrhageAnalyzer(SeriesAnalyzer):
    kind: ClassVar[str] = "head-ct-ich"
    required_labels: ClassVar[tuple[str, ...]] = (ANY, *SUBTYPES)
    minimum_slices: ClassVar[int] = MINIMUM_SLICES
    series_name: ClassVar[str] = "axial non-contrast head CT series"

    def series_header_problem(self, members: Sequence[Dataset]) -> str | None:
        if str(members[0].get("ContrastBolusAgent", "") or "").strip():
            return f"{series_label(members)} is contrast-enhanced; the model reads non-contrast CT"
        return None

    def prepare_one(self, members: list[Dataset]) -> PreparedSeries:
        series = prepare_series(members, self.manifest.input, keep_hounsfield=True)
        if series.frames[0].pixel_spacing is None:
            raise NotAnalysable(
                f"{series_label(members)} has no Pixel Spacing: the haemorrhage volume "
                "cannot be measured"
            )
        return series

    def _analyze(self, datasets: list[Dataset]) -> AnalysisResult:
        series, skipped = self.usable_series(datasets)
        any_label = self.manifest.label(ANY)
        evaluated = []
        for item in series:
            per_slice = label_probabilities(self.manifest, self.logits(item.inputs))
            per_series = {
                name: top_k_mean(values, TOP_K)
                for name, values in per_slice.items()
                if self.manifest.label(name).derived is None
            }
            for label in self.manifest.labels:
                if label.derived is not None:  # derived from the series-level probabilities
                    values = sorted(per_series[name] for name in label.derived.labels)
                    per_series[label.name] = values[-2]
            flagged = per_slice[ANY] >= any_label.threshold
            flagged = ndimage.binary_dilation(flagged, iterations=1) if flagged.any() else flagged
            frame = item.frames[0]
            assert frame.pixel_spacing is not None and item.hounsfield is not None
            volume = hemorrhage_volume_ml(
                item.hounsfield, flagged, frame.pixel_spacing, item.stack.spacing
            )
            evaluated.append((item, per_slice, per_series, volume))
        best, per_slice, per_series, volume = max(evaluated, key=lambda entry: entry[2][ANY])

        findings: list[Finding] = []
        heatmaps: list[Heatmap] = []
        for label in self.manifest.labels:
            probability = per_series[label.name]
            source = per_slice.get(label.name, per_slice[ANY])
            ranked, referenced = rank_slices(source, label.threshold, TOP_K)
            measurements = []
            present = probability >= label.threshold
            if label.name == ANY and present:
                measurements.append(Measurement(VOLUME, round(volume, 2), MILLILITER))
            findings.append(
                self.finding(
                    label,
                    probability,
                    [best.frames[i].reference for i in referenced],
                    measurements,
                )
            )
            if present and label.output_index is not None:
                count = ANY_HEATMAP_SLICES if label.name == ANY else 1
                heatmaps.extend(self.slice_heatmaps(best, label, ranked[:count]))
        return self.analysed(
            findings,
            heatmaps,
            [frame.reference for item in series for frame in item.frames],
            {
                "series": [
                    {
                        **series_summary(item),
                        "probabilities": {
                            name: round(p, 6) for name, p in series_probabilities.items()
                        },
                        "hemorrhage_volume_ml": round(series_volume, 2),
                        "slice_probabilities": [round(float(p), 4) for p in slices[ANY]],
                    }
                    for item, slices, series_probabilities, series_volume in evaluated
                ],
                "volume_method": "blood-density voxels (50-100 HU, 3x3 median, groups >= 8) in the cranial cavity on flagged slices",
                "aggregation": f"mean of the top {TOP_K} slice probabilities per label",
                "skipped": [item.to_json() for item in skipped],
            },
        )
