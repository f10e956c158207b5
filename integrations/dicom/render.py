"""Render an image the way a viewer shows it with a presentation state, annotations burnt in (pure).

dcmtk's ``dcmp2pgm`` applies a GSPS's grey-scale pipeline but does not draw its graphic or
text annotations, so pacsflow has its own small renderer: it proves in tests that contours land
on the anatomy they describe, and it draws the Secondary Capture overlays. It follows the
standard grey-scale pipeline (PS3.3 C.11, PS3.4 N.2) of :mod:`integrations.dicom.voi`, the
one the models use: Modality LUT, VOI (window LINEAR / LINEAR_EXACT / SIGMOID, or a VOI LUT),
Presentation LUT shape (IDENTITY / INVERSE); then the GSPS graphic layers in order, with each layer's recommended colour.

Scope: the Displayed Area is taken to be the whole image, spatial transformations (rotation,
flip) and shutters are not applied, INTERPOLATED graphics are drawn as polylines. The only
file it reads is a TrueType font for the text (DejaVu Sans when present, else Pillow's own).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from highdicom.color import CIELabColor
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset

from integrations.dicom.voi import (
    apply_frame_voi,
    apply_window,
    first_value,
    frame_modality_source,
    frame_voi,
    has_voi,
    modality_lut,
    shown_inverted,
    valid_window,
    window_function,
)

DEFAULT_GRAPHIC_RGB: Final = (255, 255, 0)
FONT_CANDIDATES: Final = ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@dataclass(frozen=True)
class Rendering:
    """One rendered frame: the grey-scale display values, and the annotated colour picture."""

    gray: np.ndarray  # uint8, rows x columns: after modality, VOI and presentation LUTs
    rgb: np.ndarray  # uint8, rows x columns x 3: gray with the annotations drawn
    layers: dict[str, np.ndarray] = field(default_factory=dict)  # bool masks of graphics per layer
    texts: tuple[str, ...] = ()


def modality_values(
    image: Dataset, frame: int | None = None, rescale: Dataset | None = None
) -> np.ndarray:
    """The frame's stored values through the Modality LUT, as float64.

    ``rescale`` supplies the Modality LUT instead of the image's (a GSPS's Modality LUT module
    overrides the image's); otherwise the frame's own (functional groups of enhanced objects).
    """
    if int(image.get("SamplesPerPixel", 1)) != 1:
        raise ValueError("image must be grey-scale (one sample per pixel)")
    pixels = image.pixel_array
    frames = int(image.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        if frame is None or not 1 <= frame <= frames:
            raise ValueError(f"frame must be within 1..{frames} for a multi-frame image")
        pixels = pixels[frame - 1]
    if rescale is not None and ("RescaleSlope" in rescale or "ModalityLUTSequence" in rescale):
        return modality_lut(pixels, rescale)
    return modality_lut(pixels, frame_modality_source(image, (frame or 1) - 1))


def window_to_8bit(
    values: np.ndarray, center: float, width: float, function: str = "LINEAR"
) -> np.ndarray:
    """Apply a VOI window (PS3.3 C.11.2.1.2) with an 8-bit output range."""
    return _truncate(apply_window(values, center, width, function, output_bits=8))


def _truncate(values: np.ndarray) -> np.ndarray:
    # Truncation, as dcmtk does: the reference rendering (dcmp2pgm) matches pixel for pixel.
    return np.clip(np.floor(values), 0, 255).astype(np.uint8)


def image_window(image: Dataset, values: np.ndarray) -> tuple[float, float, str]:
    """The image's own first window, else one spanning its values (for images without one)."""
    center = first_value(image.get("WindowCenter"))
    width = first_value(image.get("WindowWidth"))
    function = window_function(image)
    if valid_window(center, width, function):
        assert center is not None and width is not None
        return center, width, function
    low, high = float(np.min(values)), float(np.max(values))
    width = max(high - low + 1.0, 2.0)
    return low + (high - low + 1.0) / 2.0, width, "LINEAR"


def grayscale(
    image: Dataset, presentation_state: Dataset | None = None, frame: int | None = None
) -> np.ndarray:
    """The frame's 8-bit display values: modality LUT, VOI, presentation LUT shape.

    The VOI is the presentation state's for this image, else the image's own (VOI LUT or
    window, per frame for enhanced objects), else a window spanning the values.
    """
    values = modality_values(image, frame, presentation_state)
    if presentation_state is not None:
        voi = _voi_item(presentation_state, image, frame)
    else:
        voi = frame_voi(image, (frame or 1) - 1)
    if voi is not None and has_voi(voi):
        display = apply_frame_voi(values, voi, output_bits=8)
    else:
        center, width, function = image_window(image, values)
        display = apply_window(values, center, width, function, output_bits=8)
    # The presentation LUT acts on the VOI output before it is quantised (as in dcmtk).
    inverse = shown_inverted(image, presentation_state)
    return _truncate(255.0 - display if inverse else display)


def render(
    image: Dataset, presentation_state: Dataset | None = None, *, frame: int | None = None
) -> Rendering:
    """Render ``image`` (its ``frame``) through ``presentation_state``, annotations included."""
    if not isinstance(image, Dataset):
        raise TypeError("image must be a pydicom Dataset")
    if presentation_state is not None and not isinstance(presentation_state, Dataset):
        raise TypeError("presentation_state must be a pydicom Dataset or None")
    gray = grayscale(image, presentation_state, frame)
    if presentation_state is None:
        return Rendering(gray=gray, rgb=np.repeat(gray[..., None], 3, axis=2))
    rows, columns = gray.shape
    picture = Image.fromarray(np.repeat(gray[..., None], 3, axis=2), mode="RGB")
    draw = ImageDraw.Draw(picture)
    layer_order = {
        str(item.GraphicLayer): int(item.GraphicLayerOrder)
        for item in presentation_state.get("GraphicLayerSequence", [])
    }
    annotations = [
        item
        for item in presentation_state.get("GraphicAnnotationSequence", [])
        if _applies(item, image, frame)
    ]
    annotations.sort(key=lambda item: layer_order.get(str(item.GraphicLayer), 0))
    masks: dict[str, Image.Image] = {}
    texts: list[str] = []
    width = max(1, round(min(rows, columns) / 400))
    for annotation in annotations:
        layer = str(annotation.GraphicLayer)
        colour = layer_colour(presentation_state, layer)
        mask = masks.setdefault(layer, Image.new("1", (columns, rows), 0))
        mask_draw = ImageDraw.Draw(mask)
        for graphic in annotation.get("GraphicObjectSequence", []):
            for target, fill in ((draw, colour), (mask_draw, 1)):
                _draw_graphic(target, graphic, rows, columns, fill, width)
        for text in annotation.get("TextObjectSequence", []):
            texts.append(str(text.UnformattedTextValue))
            _draw_text(draw, text, rows, columns, colour)
    return Rendering(
        gray=gray,
        rgb=np.asarray(picture, dtype=np.uint8),
        layers={name: np.asarray(mask, dtype=bool) for name, mask in masks.items()},
        texts=tuple(texts),
    )


def layer_colour(presentation_state: Dataset, layer: str) -> tuple[int, int, int]:
    """The layer's recommended display colour as sRGB (CIELab or grey value), else yellow."""
    for item in presentation_state.get("GraphicLayerSequence", []):
        if str(item.GraphicLayer) != layer:
            continue
        if "GraphicLayerRecommendedDisplayCIELabValue" in item:
            value = [int(v) for v in item.GraphicLayerRecommendedDisplayCIELabValue]
            return CIELabColor.from_dicom_value(value).to_rgb(clip=True)
        if "GraphicLayerRecommendedDisplayGrayscaleValue" in item:
            grey = int(item.GraphicLayerRecommendedDisplayGrayscaleValue) >> 8
            return grey, grey, grey
    return DEFAULT_GRAPHIC_RGB


def blend_heatmap(
    gray: np.ndarray, heatmap: np.ndarray, *, opacity: float, floor: float
) -> np.ndarray:
    """A colour picture of ``gray`` with ``heatmap`` (in [0, 1]) blended in a jet-like map.

    Values below ``floor`` stay transparent; above it, opacity grows with the value up to
    ``opacity``.
    """
    if gray.shape != heatmap.shape:
        raise ValueError(f"heatmap shape {heatmap.shape} differs from the image's {gray.shape}")
    if not 0 < opacity <= 1 or not 0 <= floor < 1:
        raise ValueError("opacity must be in (0, 1] and floor in [0, 1)")
    base = np.repeat(gray[..., None].astype(np.float64), 3, axis=2)
    colour = _jet(np.clip(heatmap, 0.0, 1.0))
    alpha = np.clip((heatmap - floor) / (1.0 - floor), 0.0, 1.0) * opacity
    blended = base * (1.0 - alpha[..., None]) + colour * alpha[..., None]
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def draw_banner(rgb: np.ndarray, lines: Sequence[str], *, at_bottom: bool = True) -> np.ndarray:
    """Burn a black banner with ``lines`` of white text into the picture (a new array)."""
    rows, columns = rgb.shape[:2]
    size = max(9, round(rows * 0.035))
    # Shrink the type until the longest line fits the width (down to a legible minimum).
    while size > 8 and max(font(size).getlength(line) for line in lines) > columns - 8:
        size -= 1
    typeface = font(size)
    height = (size + 4) * len(lines) + 4
    picture = Image.fromarray(rgb.copy(), mode="RGB")
    draw = ImageDraw.Draw(picture)
    top = rows - height if at_bottom else 0
    draw.rectangle((0, top, columns - 1, top + height - 1), fill=(0, 0, 0))
    for index, line in enumerate(lines):
        draw.text((4, top + 2 + index * (size + 4)), line, font=typeface, fill=(255, 255, 255))
    return np.asarray(picture, dtype=np.uint8)


@functools.lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (covers Latin-1, dashes and most accents) at ``size`` px, else Pillow's font."""
    for candidate in FONT_CANDIDATES:
        try:
            return ImageFont.truetype(candidate, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _voi_item(presentation_state: Dataset, image: Dataset, frame: int | None) -> Dataset | None:
    for item in presentation_state.get("SoftcopyVOILUTSequence", []):
        references = item.get("ReferencedImageSequence")
        if not references or any(_reference_matches(ref, image, frame) for ref in references):
            return item
    return None


def _applies(annotation: Dataset, image: Dataset, frame: int | None) -> bool:
    references = annotation.get("ReferencedImageSequence")
    if not references:
        return True
    return any(_reference_matches(reference, image, frame) for reference in references)


def _reference_matches(reference: Dataset, image: Dataset, frame: int | None) -> bool:
    if str(reference.ReferencedSOPInstanceUID) != str(image.SOPInstanceUID):
        return False
    frames = reference.get("ReferencedFrameNumber")
    if frames in (None, "") or frame is None:
        return True
    listed = (
        [int(f) for f in frames]
        if isinstance(frames, Sequence) and not isinstance(frames, str)
        else [int(frames)]
    )
    return frame in listed


def _to_canvas(
    points: np.ndarray, units: str, rows: int, columns: int
) -> list[tuple[float, float]]:
    # PIXEL units put (0, 0) at the top-left corner of the top-left pixel; Pillow puts pixel
    # centres on integer coordinates, hence the half-pixel shift.
    if units == "DISPLAY":
        points = points * np.array([columns, rows], dtype=np.float64)
    return [(float(x) - 0.5, float(y) - 0.5) for x, y in points]


def _draw_graphic(
    draw: ImageDraw.ImageDraw,
    graphic: Dataset,
    rows: int,
    columns: int,
    fill: tuple[int, int, int] | int,
    width: int,
) -> None:
    data = np.asarray([float(v) for v in graphic.GraphicData], dtype=np.float64).reshape(-1, 2)
    points = _to_canvas(data, str(graphic.GraphicAnnotationUnits), rows, columns)
    kind = str(graphic.GraphicType)
    filled = str(graphic.get("GraphicFilled", "N")) == "Y"
    if kind in ("POLYLINE", "INTERPOLATED"):
        if filled and len(points) >= 3:
            draw.polygon(points, fill=fill, outline=fill)
        elif len(points) >= 2:
            draw.line(points, fill=fill, width=width)
        else:
            draw.point(points, fill=fill)
    elif kind == "CIRCLE":
        (cx, cy), (px, py) = points[0], points[1]
        radius = math.hypot(px - cx, py - cy)
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if filled:
            draw.ellipse(box, fill=fill, outline=fill)
        else:
            draw.ellipse(box, outline=fill, width=width)
    elif kind == "ELLIPSE":
        outline = _ellipse_points(points)
        if filled:
            draw.polygon(outline, fill=fill, outline=fill)
        else:
            draw.line([*outline, outline[0]], fill=fill, width=width)
    elif kind in ("POINT", "MULTIPOINT"):
        for x, y in points:
            draw.line([(x - 2, y), (x + 2, y)], fill=fill)
            draw.line([(x, y - 2), (x, y + 2)], fill=fill)


def _ellipse_points(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    (ax, ay), (bx, by), (cx, cy), (dx, dy) = points[:4]
    centre_x, centre_y = (ax + bx) / 2, (ay + by) / 2
    major = math.hypot(bx - ax, by - ay) / 2
    minor = math.hypot(dx - cx, dy - cy) / 2
    angle = math.atan2(by - ay, bx - ax)
    outline = []
    for step in range(72):
        t = 2 * math.pi * step / 72
        x, y = major * math.cos(t), minor * math.sin(t)
        outline.append(
            (
                centre_x + x * math.cos(angle) - y * math.sin(angle),
                centre_y + x * math.sin(angle) + y * math.cos(angle),
            )
        )
    return outline


def _draw_text(
    draw: ImageDraw.ImageDraw, text: Dataset, rows: int, columns: int, colour: tuple[int, int, int]
) -> None:
    value = str(text.UnformattedTextValue)
    box = None
    if "BoundingBoxTopLeftHandCorner" in text:
        corners = np.asarray(
            [*text.BoundingBoxTopLeftHandCorner, *text.BoundingBoxBottomRightHandCorner],
            dtype=np.float64,
        ).reshape(2, 2)
        (left, top), (right, bottom) = _to_canvas(
            corners, str(text.BoundingBoxAnnotationUnits), rows, columns
        )
        box = (left, top, right, bottom)
        size = max(8, round(bottom - top))
        draw.text((left, top), value, font=font(size), fill=colour)
    if "AnchorPoint" in text:
        anchor = np.asarray([float(v) for v in text.AnchorPoint], dtype=np.float64).reshape(1, 2)
        ((ax, ay),) = _to_canvas(anchor, str(text.AnchorPointAnnotationUnits), rows, columns)
        if box is None:
            size = max(8, round(rows * 0.03))
            draw.text((ax + 3, ay + 3), value, font=font(size), fill=colour)
        elif str(text.get("AnchorPointVisibility", "N")) == "Y":
            left, top, right, bottom = box
            start = ((left + right) / 2, bottom if ay > bottom else top)
            draw.line([start, (ax, ay)], fill=colour, width=1)


def _jet(values: np.ndarray) -> np.ndarray:
    """A jet-like colour map: blue, cyan, green, yellow, red for 0 .. 1 (float RGB 0..255)."""
    red = np.clip(1.5 - np.abs(4.0 * values - 3.0), 0.0, 1.0)
    green = np.clip(1.5 - np.abs(4.0 * values - 2.0), 0.0, 1.0)
    blue = np.clip(1.5 - np.abs(4.0 * values - 1.0), 0.0, 1.0)
    return np.stack([red, green, blue], axis=-1) * 255.0
