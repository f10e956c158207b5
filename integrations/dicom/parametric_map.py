"""Parametric Maps of the heatmaps, labelled Saliency (DCM 130404), for AIR-ready viewers (pure).

One Parametric Map per analysed series and label, float pixel values in [0, 1] mapped 1:1 to
real-world values whose quantity is Saliency and unit "no units", with a window over [0, 1].

The Parametric Map IOD needs a Frame of Reference and plane positions, which projection
radiographs (DX, CR) do not have; for those the carrier is skipped with that reason rather
than inventing a spatial frame.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import highdicom as hd
from pydicom import Dataset

from integrations.dicom import result_codes
from integrations.dicom.carrier_checks import series_obstacle
from integrations.dicom.result_common import (
    BUILD_CHARACTER_SET,
    BuildContext,
    PlacedHeatmap,
    ResultKind,
    SkippedCarrier,
    by_series,
    finish_series,
    header_copy,
    placed_heatmaps,
)
from integrations.dicom.segmentation import stack_heatmaps
from integrations.settings import ResultsSettings
from models.results import AnalysisResult


def build_parametric_maps(
    analysis: AnalysisResult,
    sources: Sequence[Dataset],
    *,
    profile: ResultsSettings,
    generation: int = 1,
    now: datetime.datetime | None = None,
) -> tuple[list[hd.pm.ParametricMap], list[SkippedCarrier]]:
    """Saliency maps per analysed series and label, and the series that cannot have one."""
    context = BuildContext.for_study(analysis, sources, profile, generation, now)
    maps: list[hd.pm.ParametricMap] = []
    skipped: list[SkippedCarrier] = []
    for series_uid, items in by_series(placed_heatmaps(analysis, sources)).items():
        reason = series_obstacle(ResultKind.PARAMETRIC_MAP, series_uid, items)
        if reason is not None:
            skipped.append(SkippedCarrier(ResultKind.PARAMETRIC_MAP, reason, series_uid))
            continue
        labels: list[str] = []
        for item in items:
            if item.finding.label not in labels:
                labels.append(item.finding.label)
        for label in labels:
            maps.append(
                _parametric_map(
                    context,
                    series_uid,
                    [item for item in items if item.finding.label == label],
                    len(maps),
                )
            )
    return maps, skipped


def _parametric_map(
    context: BuildContext, series_uid: str, items: list[PlacedHeatmap], index: int
) -> hd.pm.ParametricMap:
    kind = ResultKind.PARAMETRIC_MAP
    model = context.analysis.model
    finding = items[0].finding
    images, stack = stack_heatmaps(items, [finding.label])
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=finding.label[:16],
        lut_explanation=f"{finding.code.meaning} saliency (Grad-CAM), {model.name}"[:64],
        unit=result_codes.NO_UNITS,
        value_range=(0.0, 1.0),
        intercept=0.0,
        slope=1.0,
        quantity_definition=result_codes.SALIENCY,
    )
    parametric_map = hd.pm.ParametricMap(
        specific_character_set=BUILD_CHARACTER_SET,
        source_images=[header_copy(image) for image in images],
        pixel_array=stack[..., 0] if stack.shape[0] > 1 else stack[0, ..., 0],
        series_instance_uid=context.series_instance_uid(kind),
        series_number=context.series_number(kind),
        sop_instance_uid=context.sop_instance_uid(kind, series_uid, finding.label),
        instance_number=context.instance_number(index),
        manufacturer=context.profile.manufacturer,
        manufacturer_model_name=model.name[:64],
        software_versions=context.software_versions,  # type: ignore[arg-type]
        device_serial_number=context.device_serial_number,
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)],
        content_description=f"AI saliency, {finding.code.meaning}"[:64],
        content_label="SALIENCY",
    )
    return finish_series(parametric_map, context=context, kind=kind, source=images[0])
