"""Cross-sectional series (CT, MR) as stacks of 2.5D network inputs (pure).

A series is decoded frame by frame (single-frame slices or one multi-frame object), ordered
along the slice normal from Image Position (Patient), turned into channels (fixed windows in
Hounsfield units for CT, tissue-median scaling for MR), resized once for the whole stack,
and each slice is given its neighbours as extra channels (2.5D). Series that cannot be used
(localizer, too few slices, non-axial, mixed orientation, no positions) raise
:class:`~models.preprocess.NotAnalysable` with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as functional
from pydicom import Dataset

from models.package import InputSpec
from models.preprocess import (
    Geometry,
    ImageFrame,
    NotAnalysable,
    SliceStack,
    Window,
    crop_box,
    decode_frames,
    is_axial,
    percentile_scale,
    sort_slices,
    tissue_median_scale,
    to_value_range,
    window_channels,
)


@dataclass(frozen=True)
class PreparedSeries:
    series_instance_uid: str
    stack: SliceStack
    inputs: np.ndarray  # slices x channels x H x W (float32, manifest value range)
    geometry: Geometry
    hounsfield: np.ndarray | None  # slices x rows x cols, CT only (for measurements)

    @property
    def frames(self) -> tuple[ImageFrame, ...]:
        return self.stack.frames


def series_label(datasets: Sequence[Dataset]) -> str:
    first = datasets[0]
    description = str(first.get("SeriesDescription", "") or "").strip()
    return f"series {first.get('SeriesInstanceUID', '?')}" + (
        f" ({description})" if description else ""
    )


def series_problem(datasets: Sequence[Dataset], minimum_slices: int) -> str | None:
    """A header-level reason to leave the series out, or None."""
    first = datasets[0]
    image_type = [str(value).upper() for value in (first.get("ImageType") or [])]
    if "LOCALIZER" in image_type:
        return f"{series_label(datasets)} is a localizer"
    frames = sum(int(dataset.get("NumberOfFrames", 1) or 1) for dataset in datasets)
    if frames < minimum_slices:
        return f"{series_label(datasets)} has {frames} slice(s); at least {minimum_slices} needed"
    return None


def _channels(values: np.ndarray, spec: InputSpec) -> np.ndarray:
    """slices x rows x cols in modality units → slices x channels-per-slice x rows x cols."""
    if spec.windowing == "fixed":
        windows = [Window(window.center, window.width, window.function) for window in spec.windows]
        return np.stack([window_channels(plane, windows) for plane in values])
    if spec.windowing == "tissue_median":
        return tissue_median_scale(values)[:, None]
    if spec.windowing == "percentile":
        return percentile_scale(values, spec.percentiles)[:, None]
    raise NotAnalysable(f"windowing {spec.windowing!r} is for projection images, not series")


def prepare_series(
    datasets: Sequence[Dataset], spec: InputSpec, *, keep_hounsfield: bool = False
) -> PreparedSeries:
    frames = [frame for dataset in datasets for frame in decode_frames(dataset)]
    stack = sort_slices(frames)
    orientation = stack.frames[0].orientation
    assert orientation is not None
    if not is_axial(orientation):
        raise NotAnalysable(
            f"{series_label(datasets)} is not axial (slice normal {np.round(stack.normal, 2).tolist()})"
        )
    shapes = {frame.shape for frame in stack.frames}
    if len(shapes) > 1:
        raise NotAnalysable(f"{series_label(datasets)} mixes image sizes {sorted(shapes)}")
    values = np.stack([frame.values for frame in stack.frames])
    planes = _channels(values, spec)  # S x c x rows x cols
    rows, columns = values.shape[1:]
    geometry = crop_box(rows, columns, spec.crop)
    cropped = planes[
        :,
        :,
        geometry.top : geometry.top + geometry.height,
        geometry.left : geometry.left + geometry.width,
    ]
    resized = functional.interpolate(
        torch.from_numpy(np.ascontiguousarray(cropped)),
        size=tuple(spec.size),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    ).numpy()
    count = resized.shape[0]
    offsets = np.arange(-spec.context_slices, spec.context_slices + 1)
    neighbours = np.clip(np.arange(count)[:, None] + offsets[None, :], 0, count - 1)
    stacked = resized[neighbours]  # S x (2c+1) x channels x H x W
    inputs = stacked.reshape(count, -1, *resized.shape[-2:])
    return PreparedSeries(
        series_instance_uid=str(datasets[0].SeriesInstanceUID),
        stack=stack,
        inputs=to_value_range(inputs, spec.value_range),
        geometry=geometry,
        hounsfield=values if keep_hounsfield else None,
    )


def top_k_mean(values: np.ndarray, k: int) -> float:
    """Mean of the ``k`` highest values: one bright slice is not a study, three agreeing are."""
    if values.size == 0:
        return 0.0
    k = max(1, min(k, values.size))
    return float(np.mean(np.sort(values)[-k:]))
