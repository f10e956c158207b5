"""A Grad-CAM heatmap over its image, as a PNG (pure).

The image is rendered from the DICOM the way a viewer would (modality LUT, VOI window:
:func:`integrations.dicom.render.grayscale`); the map, in [0, 1] on the model's grid, is
resized to the image and blended in a blue-to-red ramp where it is above ``floor``.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom import Dataset

from integrations.dicom.render import grayscale


def _ramp(values: np.ndarray) -> np.ndarray:
    """Blue (low) through yellow to red (high), for values in [0, 1]."""
    red = np.clip(2.0 * values, 0.0, 1.0)
    green = np.clip(2.0 - 2.0 * np.abs(values - 0.5) * 2.0, 0.0, 1.0) * 0.9
    blue = np.clip(1.0 - 2.0 * values, 0.0, 1.0)
    return np.stack([red, green, blue], axis=-1)


def overlay_png(
    image: Dataset,
    heatmap: np.ndarray,
    *,
    frame: int | None = None,
    opacity: float = 0.45,
    floor: float = 0.2,
    max_side: int = 1024,
) -> bytes:
    gray = grayscale(image, None, frame).astype(np.float64) / 255.0
    rows, columns = gray.shape
    resized = Image.fromarray(np.clip(heatmap, 0.0, 1.0).astype(np.float32), mode="F").resize(
        (columns, rows), Image.Resampling.BILINEAR
    )
    values = np.asarray(resized, dtype=np.float64)
    alpha = np.where(values >= floor, opacity, 0.0)[..., None]
    rgb = (1.0 - alpha) * gray[..., None] + alpha * _ramp(values)
    picture = Image.fromarray((np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8), mode="RGB")
    if max(rows, columns) > max_side:
        picture.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
