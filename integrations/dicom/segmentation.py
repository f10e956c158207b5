"""Fractional DICOM Segmentations of the heatmaps, for AIR-ready viewers (pure).

One SEG per analysed series, one segment per label with a heatmap. The heatmap values (in
[0, 1]) are stored as FRACTIONAL / PROBABILITY with 255 steps: a viewer shows them as a
graded overlay. Each segment carries the finding's code as Segmented Property Type, the AI
model as its algorithm (family "Artificial Intelligence"), and the same Tracking UID as the
finding in the SR and the contours in the GSPS.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from highdicom.seg import (
    SegmentAlgorithmTypeValues,
    SegmentationTypeValues,
    SegmentDescription,
)
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
    frame_count,
    header_copy,
    placed_heatmaps,
)
from integrations.dicom.secondary_capture import patient_orientation
from integrations.dicom.sr import tracking_uid
from integrations.settings import ResultsSettings
from models.results import AnalysisResult, Finding

MAX_FRACTIONAL_VALUE = 255


def build_segmentations(
    analysis: AnalysisResult,
    sources: Sequence[Dataset],
    *,
    profile: ResultsSettings,
    generation: int = 1,
    now: datetime.datetime | None = None,
) -> tuple[list[hd.seg.Segmentation], list[SkippedCarrier]]:
    """One fractional SEG per analysed series with heatmaps, and the series that cannot have one.

    A series whose headers lack what a SEG needs (e.g. a multi-frame source without a Frame of
    Reference, whose frames would have no position) is skipped with the reason
    :func:`integrations.dicom.carrier_checks.series_obstacle` gives.
    """
    context = BuildContext.for_study(analysis, sources, profile, generation, now)
    segmentations: list[hd.seg.Segmentation] = []
    skipped: list[SkippedCarrier] = []
    for series_uid, items in by_series(placed_heatmaps(analysis, sources)).items():
        reason = series_obstacle(ResultKind.SEGMENTATION, series_uid, items)
        if reason is not None:
            skipped.append(SkippedCarrier(ResultKind.SEGMENTATION, reason, series_uid))
            continue
        segmentations.append(_segmentation(context, series_uid, items, len(segmentations)))
    return segmentations, skipped


def stack_heatmaps(
    items: Sequence[PlacedHeatmap], labels: Sequence[str]
) -> tuple[list[Dataset], np.ndarray]:
    """Source images of one series and their heatmaps as (frames, rows, columns, labels).

    Single-frame sources give one frame each (in the order first seen); a multi-frame source
    gives all its frames, zero where no heatmap was given.
    """
    images: list[Dataset] = []
    for item in items:
        if all(image.SOPInstanceUID != item.source.SOPInstanceUID for image in images):
            images.append(item.source)
    multiframe = [image for image in images if frame_count(image) > 1]
    if multiframe and len(images) > 1:
        raise ValueError("analysis.heatmaps mix a multi-frame image with other images of a series")
    rows, columns = int(images[0].Rows), int(images[0].Columns)
    frames = frame_count(images[0]) if multiframe else len(images)
    stack = np.zeros((frames, rows, columns, len(labels)), dtype=np.float32)
    for item in items:
        if item.values.shape != (rows, columns):
            raise ValueError("analysis.heatmaps of one series must share the image size")
        if multiframe:
            frame_index = (item.frame or 1) - 1
        else:
            frame_index = next(
                position
                for position, image in enumerate(images)
                if image.SOPInstanceUID == item.source.SOPInstanceUID
            )
        label_index = labels.index(item.finding.label)
        stack[frame_index, :, :, label_index] = np.maximum(
            stack[frame_index, :, :, label_index], item.values
        )
    return images, stack


def _labels(items: Sequence[PlacedHeatmap]) -> list[Finding]:
    findings: list[Finding] = []
    for item in items:
        if item.finding not in findings:
            findings.append(item.finding)
    return findings


def _segmentation(
    context: BuildContext, series_uid: str, items: list[PlacedHeatmap], index: int
) -> hd.seg.Segmentation:
    kind = ResultKind.SEGMENTATION
    model = context.analysis.model
    findings = _labels(items)
    images, stack = stack_heatmaps(items, [finding.label for finding in findings])
    first = images[0]
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model.name,
        family=result_codes.ARTIFICIAL_INTELLIGENCE,
        version=model.version,
        source=model.manufacturer,
    )
    descriptions = [
        SegmentDescription(
            segment_number=number,
            segment_label=finding.label[:64],
            segmented_property_category=result_codes.MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
            segmented_property_type=result_codes.to_coded(finding.code),
            algorithm_type=SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=tracking_uid(context.analysis, finding, first),
            tracking_id=finding.label[:64],
        )
        for number, finding in enumerate(findings, start=1)
    ]
    headers = [header_copy(image) for image in images]
    segmentation = hd.seg.Segmentation(
        specific_character_set=BUILD_CHARACTER_SET,
        source_images=headers,
        pixel_array=stack if stack.shape[-1] > 1 else stack[..., 0],
        segmentation_type=SegmentationTypeValues.FRACTIONAL,
        segment_descriptions=descriptions,
        series_instance_uid=context.series_instance_uid(kind),
        series_number=context.series_number(kind),
        sop_instance_uid=context.sop_instance_uid(kind, series_uid),
        instance_number=context.instance_number(index),
        manufacturer=context.profile.manufacturer,
        manufacturer_model_name=model.name[:64],
        software_versions=context.software_versions,  # type: ignore[arg-type]
        device_serial_number=context.device_serial_number,
        max_fractional_value=MAX_FRACTIONAL_VALUE,
        content_description=f"AI heatmaps, {model.name} {model.version}"[:64],
        content_label="AI_HEATMAP",
        omit_empty_frames=True,
    )
    placed = "FrameOfReferenceUID" in first and "ImagePositionPatient" in first
    if not placed and "PatientOrientation" not in segmentation:
        # Projection images (or any without a position in the patient) have no plane
        # positions: General Image then wants the orientation of rows and columns (Type 2C).
        segmentation.PatientOrientation = list(patient_orientation(first))
    return finish_series(segmentation, context=context, kind=kind, source=first)
