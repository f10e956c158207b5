"""Diffusion MRI acute ischemic stroke analyzer: restricted diffusion, volume, regions (pure).

The study's diffusion images are chosen by b-value and its ADC map by Image Type
(:mod:`models.analyzers.diffusion`), never by description; a study without both is not
analysable, with the reason. The two must cover the same slices (positions within 1 mm, same
matrix). Each slice is given to the network as the b=1000 image (scaled by its tissue median)
and the ADC map (fixed window, x 10^-6 mm2/s), each with its neighbours (2.5D). Per slice the
network scores restricted diffusion; the study's probability is the mean of the two most
suspicious slices. Infarct voxels are ADC dark (150-620) and diffusion bright (over 1.4 x the
brain's median) on the flagged slices, in groups of at least 8: their volume in mL and the
ASPECTS-style regions (:mod:`models.analyzers.stroke`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import numpy as np
from pydicom import Dataset
from scipy import ndimage

from models.analyzers.base import Skipped, label_probabilities, nothing_to_analyse
from models.analyzers.diffusion import select_diffusion
from models.analyzers.series import SeriesAnalyzer, series_summary
from models.analyzers.stroke import aspects, flagged_slices, keep_groups, stroke_findings
from models.analyzers.volume import PreparedSeries, prepare_series, series_label
from models.labels import ISCHEMIC_STROKE
from models.package import InputSpec
from models.preprocess import NotAnalysable, image_reference
from models.results import AnalysisResult

ADC_DARK = (150.0, 620.0)
BRAIN_ADC = (150.0, 1500.0)
DWI_BRIGHT = 1.4
MINIMUM_GROUP = 8
POSITION_TOLERANCE_MM = 1.0


def infarct_masks(dwi: np.ndarray, adc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(brain, restricted-diffusion) masks per slice from b=1000 and ADC values."""
    adc = ndimage.median_filter(adc, size=(1, 3, 3))
    dwi = ndimage.median_filter(dwi, size=(1, 3, 3))
    brain = (adc >= BRAIN_ADC[0]) & (adc <= BRAIN_ADC[1])
    reference = float(np.median(dwi[brain])) if brain.any() else float(np.median(dwi))
    restricted = brain & (adc <= ADC_DARK[1]) & (dwi >= DWI_BRIGHT * reference)
    return brain, restricted


def prepare_pair(
    dwi_members: list[Dataset], adc_members: list[Dataset], spec: InputSpec
) -> tuple[PreparedSeries, PreparedSeries, PreparedSeries]:
    """(network input series, diffusion images, ADC map): the two interleaved per slice."""
    dwi_spec = spec.model_copy(update={"windowing": "tissue_median", "windows": []})
    adc_spec = spec.model_copy(update={"windows": [spec.windows[-1]]})
    dwi = prepare_series(dwi_members, dwi_spec, keep_hounsfield=True)
    adc = prepare_series(adc_members, adc_spec, keep_hounsfield=True)
    if dwi.frames[0].pixel_spacing is None:
        raise NotAnalysable(f"{series_label(dwi_members)} has no Pixel Spacing")
    heights = [np.asarray(frame.position) for frame in dwi.frames]
    others = [np.asarray(frame.position) for frame in adc.frames]
    if (
        len(heights) != len(others)
        or dwi.frames[0].shape != adc.frames[0].shape
        or max(float(np.abs(a - b).max()) for a, b in zip(heights, others, strict=True))
        > POSITION_TOLERANCE_MM
    ):
        raise NotAnalysable(
            f"the ADC map {series_label(adc_members)} does not cover the same slices as "
            f"the diffusion images {series_label(dwi_members)}"
        )
    count = dwi.inputs.shape[1]
    inputs = np.stack([dwi.inputs, adc.inputs], axis=2).reshape(
        len(dwi.frames), 2 * count, *dwi.inputs.shape[-2:]
    )
    return replace(dwi, inputs=inputs), dwi, adc


class BrainMriStrokeAnalyzer(SeriesAnalyzer):
    kind: ClassVar[str] = "brain-mri-stroke"
    required_labels: ClassVar[tuple[str, ...]] = (ISCHEMIC_STROKE,)
    minimum_slices: ClassVar[int] = 8
    series_name: ClassVar[str] = "axial diffusion series with an ADC map"

    def _analyze(self, datasets: list[Dataset]) -> AnalysisResult:
        selection = select_diffusion(datasets)
        skipped: list[Skipped] = []
        if selection.dwi is None or selection.adc is None:
            missing = (
                "diffusion images with a b-value of 500-3000"
                if selection.dwi is None
                else ("ADC map (Image Type ADC)")
            )
            raise NotAnalysable(f"no {missing} in the study; series seen: {selection.calls}")
        for members in (selection.dwi, selection.adc):
            problem = self.members_problem(members)
            if problem is not None:
                skipped.append(Skipped(image_reference(members[0]), problem))
        if skipped:
            raise nothing_to_analyse(self.series_name, skipped)
        combined, dwi, adc = prepare_pair(selection.dwi, selection.adc, self.manifest.input)
        per_slice = label_probabilities(self.manifest, self.logits(combined.inputs))
        assert dwi.hounsfield is not None and adc.hounsfield is not None
        brain, restricted = infarct_masks(dwi.hounsfield, adc.hounsfield)
        flagged = flagged_slices(
            per_slice[ISCHEMIC_STROKE], self.manifest.label(ISCHEMIC_STROKE).threshold
        )
        infarct = keep_groups(restricted & flagged[:, None, None], MINIMUM_GROUP)
        regional = aspects(combined, brain, infarct)
        findings, heatmaps, probabilities = stroke_findings(
            self, combined, per_slice, infarct, regional, self.required_labels
        )
        return self.analysed(
            findings,
            heatmaps,
            [frame.reference for frame in (*dwi.frames, *adc.frames)],
            {
                "series": [
                    {
                        **series_summary(dwi),
                        "b_value": selection.dwi_b_value,
                        "adc_series_instance_uid": adc.series_instance_uid,
                        "probabilities": {k: round(v, 6) for k, v in probabilities.items()},
                        "slice_probabilities": [
                            round(float(p), 4) for p in per_slice[ISCHEMIC_STROKE]
                        ],
                    }
                ],
                "selection": "diffusion images by b-value (highest of 500-3000), ADC by Image Type",
                "sequences": selection.calls,
                "aspects": regional.to_json(),
                "volume_method": (
                    "ADC 150-620 x 10^-6 mm2/s and b=1000 over 1.4 x the brain median "
                    "(3x3 median, groups >= 8) on flagged slices"
                ),
                "aggregation": "mean of the top 2 slice probabilities",
                "skipped": [],
            },
        )
