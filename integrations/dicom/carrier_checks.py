"""Which result carriers the source headers allow, and in plain words why not (pure).

Optional DICOM attributes are often absent (Patient Orientation, Frame of Reference, Pixel
Spacing, Image Position/Orientation, Slice Thickness, Rescale ...). Each carrier needs its
own subset, so each is judged on its own, per analysed series, from the headers alone: the
SR (built before the overlays, from headers without pixel data) states which carriers will
not be produced and why, and the overlay builder skips exactly those, with the same words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from highdicom._standard_utils import ModuleUsageValues, get_module_usage
from pydicom import Dataset

from integrations.dicom.result_common import (
    PlacedHeatmap,
    ResultKind,
    SkippedCarrier,
    by_series,
    frame_count,
    placed_heatmaps,
)
from integrations.dicom.secondary_capture import patient_orientation
from integrations.settings import ResultsSettings
from models.results import AnalysisResult

NO_HEATMAPS: Final = "the analysis has no heatmaps"
_NAMES: Final = {
    "FrameOfReferenceUID": "Frame of Reference UID",
    "ImagePositionPatient": "Image Position (Patient)",
    "ImageOrientationPatient": "Image Orientation (Patient)",
    "PixelSpacing": "Pixel Spacing",
    "SliceThickness": "Slice Thickness",
}
# What highdicom needs to place SEG and Parametric Map frames in the patient.
_PLANE_KEYWORDS: Final = ("PixelSpacing", "ImageOrientationPatient", "SliceThickness")


def _missing(images: Sequence[Dataset], keywords: Sequence[str]) -> list[str]:
    return [
        _NAMES.get(keyword, keyword)
        for keyword in keywords
        if any(keyword not in image or image.get(keyword) in (None, "") for image in images)
    ]


def _lacks(series: str, names: list[str]) -> str:
    return f"the source images of series {series} have no {', '.join(names)}"


def has_patient_orientation(source: Dataset) -> bool:
    """Row and column directions can be given: Patient Orientation or orientation cosines."""
    try:
        patient_orientation(source)
    except ValueError:
        return False
    return True


def _frame_of_reference_mandatory(image: Dataset) -> bool:
    try:
        usage = get_module_usage("frame-of-reference", str(image.SOPClassUID))
    except (AttributeError, KeyError, ValueError):
        return False
    return usage == ModuleUsageValues.MANDATORY


def _rescale_obstacle(series: str, images: Sequence[Dataset]) -> str | None:
    for image in images:
        if ("RescaleIntercept" in image) != ("RescaleSlope" in image):
            return (
                f"the source images of series {series} have only one of Rescale Intercept "
                "and Rescale Slope"
            )
    return None


def series_obstacle(kind: ResultKind, series: str, items: Sequence[PlacedHeatmap]) -> str | None:
    """Why ``kind`` cannot be built for the heatmaps ``items`` of one series, or None."""
    images: list[Dataset] = []
    for item in items:
        if all(image.SOPInstanceUID != item.source.SOPInstanceUID for image in images):
            images.append(item.source)
    if kind == ResultKind.GSPS:
        if any(int(image.get("SamplesPerPixel", 1) or 1) != 1 for image in images):
            return f"a GSPS needs grey-scale source images; series {series} is in colour"
        return _rescale_obstacle(series, images)
    if kind == ResultKind.SECONDARY_CAPTURE:
        if not all(has_patient_orientation(image) for image in images):
            return (
                f"the source images of series {series} have neither Patient Orientation nor "
                "Image Orientation (Patient), which a Secondary Capture must state"
            )
        return None
    has_frame_of_reference = all("FrameOfReferenceUID" in image for image in images)
    if kind == ResultKind.SEGMENTATION:
        if not has_frame_of_reference:
            if any(frame_count(image) > 1 for image in images):
                return (
                    "a Segmentation of a multi-frame image needs a Frame of Reference; "
                    f"the source of series {series} has none"
                )
            if any(_frame_of_reference_mandatory(image) for image in images):
                return _lacks(series, ["Frame of Reference UID"])
        placed = has_frame_of_reference and all("ImagePositionPatient" in i for i in images)
        if placed:
            missing = _missing(images, _PLANE_KEYWORDS)
            return _lacks(series, missing) if missing else None
        if len(images) > 1:
            return (
                f"the source images of series {series} have no position in the patient "
                "(Frame of Reference and Image Position), so their frames cannot be stacked"
            )
        if not has_patient_orientation(images[0]):
            return _lacks(series, ["Patient Orientation", "Image Orientation (Patient)"])
        return None
    if kind == ResultKind.PARAMETRIC_MAP:
        if not has_frame_of_reference:
            return (
                "a Parametric Map needs a Frame of Reference; "
                f"the source images of series {series} have none"
            )
        missing = _missing(images, ("ImagePositionPatient", *_PLANE_KEYWORDS))
        return _lacks(series, missing) if missing else None
    return None


def carrier_obstacles(
    analysis: AnalysisResult, sources: Sequence[Dataset], profile: ResultsSettings
) -> tuple[SkippedCarrier, ...]:
    """Every (carrier, series) the profile asks for that the sources cannot have, and why.

    Headers are enough (no pixel data). A carrier of the profile appears once per series it
    cannot be built for; the SR carrier never appears.
    """
    overlays = [ResultKind(carrier) for carrier in profile.carriers if carrier != "sr"]
    if not overlays:
        return ()
    if not analysis.heatmaps:
        return tuple(SkippedCarrier(kind, NO_HEATMAPS) for kind in overlays)
    try:
        groups = by_series(placed_heatmaps(analysis, sources))
    except ValueError as error:
        return tuple(SkippedCarrier(kind, f"the heatmaps do not fit: {error}") for kind in overlays)
    skipped = []
    for kind in overlays:
        for series, items in groups.items():
            reason = series_obstacle(kind, series, items)
            if reason is not None:
                skipped.append(SkippedCarrier(kind, reason, series))
    return tuple(skipped)
