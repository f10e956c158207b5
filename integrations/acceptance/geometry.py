"""Where an overlay pacsflow sent points, and whether that is the ground-truth region (pure).

Each carrier says where its finding is in its own way; :func:`hot_spots` reads one point per
finding and image from each:

* GSPS: the anchor point of the finding's text object (the heatmap's peak, in pixels), else
  the centre of its innermost contour;
* Secondary Capture: the centre of the most saturated red of the blended jet colour map (the
  heatmap's top values), on the image its Source Image Sequence names;
* Segmentation: the peak of each fractional segment frame, on the frame's source image.

:func:`on_region` decides whether a point lies on a finding's :class:`RegionBox`: inside the
box grown by a margin on the same image, or on an image whose plane is at most
``through_plane_mm`` from one that has a box (Grad-CAM on a slab may peak a slice away).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset

from integrations.acceptance.truth import RegionBox

GSPS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.11.1"
SEGMENTATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
# The jet map's top: red clearly above blue; its centre is the heatmap's peak.
_HOTTEST_FRACTION = 0.9


@dataclass(frozen=True)
class HotSpot:
    """One overlay's point for one finding on one image (pixel row and column, 0-based)."""

    carrier: str  # "gsps", "secondary_capture", "segmentation"
    label: str
    sop_instance_uid: str
    frame: int | None
    row: float
    column: float

    def describe(self) -> str:
        return f"{self.carrier} {self.label!r} at row {self.row:.0f}, column {self.column:.0f}"


def hot_spots(dataset: Dataset) -> list[HotSpot]:
    """The hot spots of one result object; [] for an SR or anything without an overlay."""
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class == GSPS_SOP_CLASS:
        return _gsps_spots(dataset)
    if sop_class == SEGMENTATION_SOP_CLASS:
        return _segmentation_spots(dataset)
    if "SourceImageSequence" in dataset and str(dataset.get("PhotometricInterpretation")) == "RGB":
        return _secondary_capture_spots(dataset)
    return []


def _gsps_spots(dataset: Dataset) -> list[HotSpot]:
    spots: list[HotSpot] = []
    contours: dict[tuple[str, str, int | None], list[np.ndarray]] = {}
    for annotation in dataset.get("GraphicAnnotationSequence", []):
        references = annotation.get("ReferencedImageSequence", [])
        if not references:
            continue
        uid = str(references[0].ReferencedSOPInstanceUID)
        frame_value = references[0].get("ReferencedFrameNumber")
        frame = int(frame_value) if frame_value else None
        for text in annotation.get("TextObjectSequence", []):
            anchor = text.get("AnchorPoint")
            if anchor is not None and str(text.get("AnchorPointAnnotationUnits")) == "PIXEL":
                column, row = float(anchor[0]) - 0.5, float(anchor[1]) - 0.5
                label = str(text.get("TrackingID", "") or text.get("UnformattedTextValue", ""))
                spots.append(HotSpot("gsps", label, uid, frame, row, column))
        for graphic in annotation.get("GraphicObjectSequence", []):
            if str(graphic.get("GraphicAnnotationUnits")) != "PIXEL":
                continue
            points = np.asarray(graphic.GraphicData, dtype=float).reshape(-1, 2)
            key = (str(graphic.get("TrackingID", "")), uid, frame)
            contours.setdefault(key, []).append(points)
    anchored = {(spot.label, spot.sop_instance_uid, spot.frame) for spot in spots}
    for (label, uid, frame), polygons in contours.items():
        if (label, uid, frame) in anchored:
            continue
        smallest = min(polygons, key=lambda points: _polygon_area(points))
        column, row = smallest.mean(axis=0)
        spots.append(HotSpot("gsps", label, uid, frame, float(row) - 0.5, float(column) - 0.5))
    return spots


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def _secondary_capture_spots(dataset: Dataset) -> list[HotSpot]:
    picture = np.asarray(dataset.pixel_array, dtype=np.int32)
    if picture.ndim != 3 or picture.shape[-1] != 3:
        return []
    redness = picture[..., 0] - picture[..., 2]
    top = int(redness.max())
    if top <= 0:
        return []
    rows, columns = np.nonzero(redness >= _HOTTEST_FRACTION * top)
    source = dataset.SourceImageSequence[0]
    frame_value = source.get("ReferencedFrameNumber")
    description = str(dataset.get("DerivationDescription", ""))
    label = description.split(" heatmap of ")[0] if " heatmap of " in description else ""
    return [
        HotSpot(
            "secondary_capture",
            label,
            str(source.ReferencedSOPInstanceUID),
            int(frame_value) if frame_value else None,
            float(rows.mean()),
            float(columns.mean()),
        )
    ]


def _segmentation_spots(dataset: Dataset) -> list[HotSpot]:
    labels = {
        int(segment.SegmentNumber): str(segment.get("SegmentLabel", ""))
        for segment in dataset.get("SegmentSequence", [])
    }
    frames = np.asarray(dataset.pixel_array)
    if frames.ndim == 2:
        frames = frames[None, ...]
    shared = (dataset.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    spots = []
    for index, group in enumerate(dataset.get("PerFrameFunctionalGroupsSequence", [])):
        if index >= len(frames) or not frames[index].any():
            continue
        identification = group.get("SegmentIdentificationSequence") or shared.get(
            "SegmentIdentificationSequence"
        )
        if not identification:
            continue
        segment = int(identification[0].ReferencedSegmentNumber)
        derivation = group.get("DerivationImageSequence") or shared.get(
            "DerivationImageSequence", []
        )
        if not derivation or not derivation[0].get("SourceImageSequence"):
            continue
        source = derivation[0].SourceImageSequence[0]
        frame_value = source.get("ReferencedFrameNumber")
        row, column = np.unravel_index(int(np.argmax(frames[index])), frames[index].shape)
        spots.append(
            HotSpot(
                "segmentation",
                labels.get(segment, ""),
                str(source.ReferencedSOPInstanceUID),
                int(frame_value) if frame_value else None,
                float(row),
                float(column),
            )
        )
    return spots


@dataclass(frozen=True)
class ImagePlane:
    """What :func:`on_region` needs of a source image: its size and its plane's position."""

    rows: int
    columns: int
    normal_position_mm: float | None  # along the plane's normal; None for a projection image


def image_planes(datasets: Iterable[Dataset]) -> dict[str, ImagePlane]:
    planes = {}
    for dataset in datasets:
        position = dataset.get("ImagePositionPatient")
        orientation = dataset.get("ImageOrientationPatient")
        along = None
        if position is not None and orientation is not None and len(orientation) == 6:
            cosines = np.asarray(orientation, dtype=float)
            normal = np.cross(cosines[:3], cosines[3:])
            along = float(np.dot(normal, np.asarray(position, dtype=float)))
        planes[str(dataset.SOPInstanceUID)] = ImagePlane(
            int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0)), along
        )
    return planes


def on_region(
    spot: HotSpot,
    region: Sequence[RegionBox],
    planes: Mapping[str, ImagePlane],
    *,
    margin: float,
    through_plane_mm: float,
) -> bool:
    """True when ``spot`` lies in a box of ``region`` (grown by ``margin`` of the image size)
    on its own image, or on the nearest boxed image within ``through_plane_mm``."""
    plane = planes.get(spot.sop_instance_uid)
    same_image = [
        box
        for box in region
        if box.sop_instance_uid == spot.sop_instance_uid and (box.frame or None) == spot.frame
    ]
    candidates = same_image
    if not candidates and plane is not None and plane.normal_position_mm is not None:
        nearby = []
        for box in region:
            other = planes.get(box.sop_instance_uid)
            if other is None or other.normal_position_mm is None:
                continue
            distance = abs(other.normal_position_mm - plane.normal_position_mm)
            if distance <= through_plane_mm:
                nearby.append((distance, box))
        if nearby:
            closest = min(distance for distance, _ in nearby)
            candidates = [box for distance, box in nearby if distance == closest]
    rows = plane.rows if plane else 0
    columns = plane.columns if plane else 0
    grow_rows, grow_columns = margin * rows, margin * columns
    return any(
        box.row_min - grow_rows <= spot.row <= box.row_max + grow_rows
        and box.column_min - grow_columns <= spot.column <= box.column_max + grow_columns
        for box in candidates
    )


def matches_finding(spot_label: str, findings: Iterable[str]) -> bool:
    """Whether an overlay's label names one of the ground-truth findings (case-insensitive:
    carriers use the finding's label or its code meaning)."""
    wanted = spot_label.strip().lower()
    return bool(wanted) and any(wanted == finding.strip().lower() for finding in findings)
