"""Projection radiographs as network input, shared by the chest and fracture analyzers (pure).

The image a radiologist sees: each frame through its own VOI LUT or window, MONOCHROME1
inverted, then cropped and resized as the manifest's input spec says, with the geometry kept
to map heatmaps back onto the full image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom import Dataset

from models.package import InputSpec
from models.preprocess import Geometry, decode_frames, display_values, fit, to_value_range
from models.results import ImageReference


@dataclass(frozen=True)
class PreparedImage:
    reference: ImageReference
    inputs: np.ndarray  # C x H x W, in the manifest's value range
    geometry: Geometry


def prepare_radiograph(dataset: Dataset, spec: InputSpec) -> list[PreparedImage]:
    """Every frame of a radiograph as network input (VOI, MONOCHROME1, crop, resize)."""
    prepared = []
    for frame in decode_frames(dataset):
        shown = display_values(frame)
        resized, geometry = fit(shown, spec.size, spec.crop)
        inputs = to_value_range(resized, spec.value_range)[None]
        prepared.append(PreparedImage(frame.reference, inputs, geometry))
    return prepared
