"""From DICOM pixel data to model input, done the way PS3.3 says (pure: no file or network I/O).

The chain for every frame: decode (compressed transfer syntaxes through the pylibjpeg /
pyjpegls plugins), Modality LUT (Rescale Slope/Intercept, Modality LUT Sequence, or the
per-frame Pixel Value Transformation of enhanced objects), then either the image's own VOI LUT
or window (radiographs), fixed windows in Hounsfield units (CT), or percentile scaling (MR);
MONOCHROME1 is inverted after the VOI transform. Slices are ordered by their position along
the slice normal computed from Image Orientation / Image Position (Patient), never by
Instance Number. Anything that makes an image unusable raises :class:`NotAnalysable` with a
reason a radiographer can act on; analyzers turn it into a ``not_analysable`` result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as functional
from pydicom import Dataset

from integrations.dicom.voi import (
    apply_frame_voi,
    frame_modality_source,
    frame_voi,
    functional_group,
    modality_lut,
    shown_inverted,
)
from integrations.dicom.voi import apply_window as shared_window
from models.results import ImageReference

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")


class NotAnalysable(Exception):
    """An image or series the analyzer cannot use; ``reason`` says why, in words."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Window:
    """An explicit VOI window (PS3.3 C.11.2.1.2); ``function`` is LINEAR, LINEAR_EXACT or SIGMOID."""

    center: float
    width: float
    function: str = "LINEAR"


@dataclass(frozen=True)
class ImageFrame:
    """One decoded 2D image (a single-frame instance or one frame of a multi-frame one)."""

    reference: ImageReference
    values: np.ndarray = field(compare=False)  # float32, after the Modality LUT
    photometric: str
    voi: Dataset | None = field(compare=False, repr=False)  # the item holding the frame's VOI
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing) in mm
    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    modality: str
    dataset: Dataset = field(compare=False, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.values.shape[0]), int(self.values.shape[1])


# --------------------------------------------------------------------------------- references
def image_reference(dataset: Dataset, frame_number: int | None = None) -> ImageReference:
    return ImageReference(
        sop_class_uid=str(dataset.SOPClassUID),
        sop_instance_uid=str(dataset.SOPInstanceUID),
        series_instance_uid=str(dataset.SeriesInstanceUID),
        frame_number=frame_number,
    )


def describe(reference: ImageReference) -> str:
    text = f"image {reference.sop_instance_uid}"
    return text if reference.frame_number is None else f"{text} frame {reference.frame_number}"


def group_by_series(datasets: Iterable[Dataset]) -> dict[str, list[Dataset]]:
    """Series Instance UID → its instances, first-seen order; duplicate SOP instances dropped."""
    series: dict[str, list[Dataset]] = {}
    seen: set[str] = set()
    for dataset in datasets:
        sop_instance_uid = str(dataset.get("SOPInstanceUID", ""))
        if sop_instance_uid and sop_instance_uid in seen:
            continue
        seen.add(sop_instance_uid)
        series.setdefault(str(dataset.get("SeriesInstanceUID", "")), []).append(dataset)
    return series


# ------------------------------------------------------------------------------------ decoding
def _spacing_for(dataset: Dataset, frame_index: int) -> tuple[float, float] | None:
    item = functional_group(dataset, frame_index, "PixelMeasuresSequence")
    for source, keyword in (
        (item, "PixelSpacing"),
        (dataset, "PixelSpacing"),
        (dataset, "ImagerPixelSpacing"),
    ):
        if source is not None and keyword in source and source.get(keyword):
            row, column = (float(value) for value in source.get(keyword)[:2])
            if row > 0 and column > 0:
                return row, column
    return None


def _position_for(dataset: Dataset, frame_index: int) -> tuple[float, float, float] | None:
    item = functional_group(dataset, frame_index, "PlanePositionSequence")
    source = item if item is not None else dataset
    value = source.get("ImagePositionPatient")
    if value is None or len(value) != 3:
        return None
    x, y, z = (float(v) for v in value)
    return x, y, z


def _orientation_for(
    dataset: Dataset, frame_index: int
) -> tuple[float, float, float, float, float, float] | None:
    item = functional_group(dataset, frame_index, "PlaneOrientationSequence")
    source = item if item is not None else dataset
    value = source.get("ImageOrientationPatient")
    if value is None or len(value) != 6:
        return None
    a, b, c, d, e, f = (float(v) for v in value)
    return a, b, c, d, e, f


def decode_frames(dataset: Dataset) -> list[ImageFrame]:
    """Every frame of ``dataset`` in modality units, or :class:`NotAnalysable` with the reason."""
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        raise NotAnalysable(f"{describe(image_reference(dataset))} has no pixel data")
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in MONOCHROME or int(dataset.get("SamplesPerPixel", 1)) != 1:
        raise NotAnalysable(
            f"{describe(image_reference(dataset))}: unsupported photometric interpretation "
            f"{photometric or '(missing)'} (grayscale MONOCHROME1/2 needed)"
        )
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # decoders raise many types; all mean "cannot decode"
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax))
        raise NotAnalysable(
            f"{describe(image_reference(dataset))}: pixel data cannot be decoded "
            f"(transfer syntax {name}): {error}"
        ) from None
    frame_count = int(dataset.get("NumberOfFrames", 1) or 1)
    stack = pixels.reshape((frame_count, *pixels.shape[-2:])) if frame_count > 1 else pixels[None]
    modality = str(dataset.get("Modality", "")).upper()
    frames = []
    for index in range(stack.shape[0]):
        values = modality_lut(stack[index], frame_modality_source(dataset, index))
        frames.append(
            ImageFrame(
                reference=image_reference(dataset, index + 1 if frame_count > 1 else None),
                values=values.astype(np.float32),
                photometric=photometric,
                voi=frame_voi(dataset, index),
                pixel_spacing=_spacing_for(dataset, index),
                position=_position_for(dataset, index),
                orientation=_orientation_for(dataset, index),
                modality=modality,
                dataset=dataset,
            )
        )
    return frames


# ---------------------------------------------------------------------------------- intensity
def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """An explicit window (e.g. a manifest's CT window) to [0, 1] (float32)."""
    shown = shared_window(values, window.center, window.width, window.function)
    return shown.astype(np.float32)


def display_values(frame: ImageFrame) -> np.ndarray:
    """The image as a viewer shows it: the image's VOI, then MONOCHROME1 inverted; in [0, 1].

    The same pipeline as the renderer (:mod:`integrations.dicom.voi`). Without any VOI in the
    header the 0.5-99.5 percentile range is used (a viewer's "auto").
    """
    if frame.voi is not None:
        shown = apply_frame_voi(frame.values, frame.voi).astype(np.float32)
    else:
        shown = percentile_scale(frame.values, (0.5, 99.5))
    return (1.0 - shown) if shown_inverted(frame.dataset) else shown


def percentile_scale(values: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    low, high = np.percentile(values, percentiles)
    if high <= low:
        return np.zeros_like(values, dtype=np.float32)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def tissue_median_scale(values: np.ndarray) -> np.ndarray:
    """Divide by 2.5 x the median of tissue voxels (above 10 % of the 99.5th percentile)."""
    ceiling = float(np.percentile(values, 99.5))
    tissue = values[values > 0.1 * ceiling]
    reference = float(np.median(tissue)) if tissue.size else ceiling
    if reference <= 0:
        return np.zeros_like(values, dtype=np.float32)
    return np.clip(values / (2.5 * reference), 0.0, 1.0).astype(np.float32)


def window_channels(values: np.ndarray, windows: Sequence[Window]) -> np.ndarray:
    """One [0, 1] channel per explicit window in modality units: shape (C, rows, cols)."""
    return np.stack([apply_window(values, window) for window in windows])


# ----------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Geometry:
    """How an image was cropped and resized for the network, to map heatmaps back."""

    rows: int
    columns: int
    top: int
    left: int
    height: int
    width: int

    def to_image(self, small: np.ndarray) -> np.ndarray:
        """Map a network-resolution map back onto the full image (zeros outside the crop)."""
        tensor = torch.as_tensor(np.ascontiguousarray(small), dtype=torch.float32)[None, None]
        resized = functional.interpolate(
            tensor, size=(self.height, self.width), mode="bilinear", align_corners=False
        )[0, 0].numpy()
        full = np.zeros((self.rows, self.columns), dtype=np.float32)
        full[self.top : self.top + self.height, self.left : self.left + self.width] = resized
        return full


def crop_box(rows: int, columns: int, crop: str) -> Geometry:
    if crop == "center_square":
        side = min(rows, columns)
        return Geometry(rows, columns, (rows - side) // 2, (columns - side) // 2, side, side)
    return Geometry(rows, columns, 0, 0, rows, columns)


def fit(
    image: np.ndarray, size: tuple[int, int], crop: str = "none"
) -> tuple[np.ndarray, Geometry]:
    """Crop and resize ``image`` ((rows, cols) or (C, rows, cols)) to ``size`` with antialiasing."""
    planes = image if image.ndim == 3 else image[None]
    geometry = crop_box(planes.shape[1], planes.shape[2], crop)
    cropped = planes[
        :,
        geometry.top : geometry.top + geometry.height,
        geometry.left : geometry.left + geometry.width,
    ]
    tensor = torch.as_tensor(np.ascontiguousarray(cropped), dtype=torch.float32)[None]
    resized = functional.interpolate(
        tensor, size=tuple(size), mode="bilinear", align_corners=False, antialias=True
    )[0].numpy()
    return (resized if image.ndim == 3 else resized[0]), geometry


def to_value_range(image: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    low, high = value_range
    return (image * (high - low) + low).astype(np.float32)


# ------------------------------------------------------------------------------------- slices
def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    row = np.asarray(orientation[:3], dtype=np.float64)
    column = np.asarray(orientation[3:], dtype=np.float64)
    normal = np.cross(row, column)
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        raise NotAnalysable("Image Orientation (Patient) is degenerate")
    return normal / length


@dataclass(frozen=True)
class SliceStack:
    """Slices of one series ordered along the slice normal (from Image Position (Patient))."""

    frames: tuple[ImageFrame, ...]
    spacing: float  # mm between slice centres (median)
    normal: tuple[float, float, float]

    def __len__(self) -> int:
        return len(self.frames)


def sort_slices(frames: Sequence[ImageFrame]) -> SliceStack:
    """Order ``frames`` by position along the normal; refuse mixed orientations or gaps."""
    if not frames:
        raise NotAnalysable("series has no slices")
    missing = [frame for frame in frames if frame.position is None or frame.orientation is None]
    if missing:
        raise NotAnalysable(
            f"slice position or orientation (Image Position/Orientation (Patient)) missing on "
            f"{len(missing)} of {len(frames)} slices"
        )
    reference = frames[0].orientation
    assert reference is not None
    normal = slice_normal(reference)
    for frame in frames:
        assert frame.orientation is not None
        if not np.allclose(frame.orientation, reference, atol=1e-3):
            raise NotAnalysable("slices of the series have different orientations")
    distances = np.array([float(np.dot(frame.position, normal)) for frame in frames])  # type: ignore[arg-type]
    order = np.argsort(distances, kind="stable")
    ordered = tuple(frames[index] for index in order)
    steps = np.diff(distances[order])
    if steps.size and float(np.min(steps)) < 1e-3:
        raise NotAnalysable("two slices share one position (duplicate or overlapping series)")
    spacing = float(np.median(steps)) if steps.size else float("nan")
    return SliceStack(ordered, spacing, (float(normal[0]), float(normal[1]), float(normal[2])))


def is_axial(orientation: Sequence[float], tolerance_degrees: float = 30.0) -> bool:
    normal = slice_normal(orientation)
    return abs(float(normal[2])) >= math.cos(math.radians(tolerance_degrees))


def context_indices(count: int, context: int) -> np.ndarray:
    """For each slice, the indices of itself and ``context`` neighbours each side (edges clamp)."""
    offsets = np.arange(-context, context + 1)
    return np.clip(np.arange(count)[:, None] + offsets[None, :], 0, count - 1)
