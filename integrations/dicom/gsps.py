"""Grayscale Softcopy Presentation States with the heatmap's iso-contours (pure).

One GSPS per analysed series. For every heatmap it references the exact image (and frame)
and carries, on one graphic layer per level, closed POLYLINE iso-contours of the heatmap at
the profile's levels (fractions of the heatmap's peak), plus a text annotation with the
finding and its probability anchored at the peak. The grey-scale pipeline follows the source:
its Modality LUT, its first VOI window (one spanning the pixel values when it has none) and
an INVERSE presentation LUT for MONOCHROME1 images, so the image looks as it did without us.

Contour coordinates are PIXEL units: (0, 0) is the top-left corner of the top-left pixel,
so the centre of the pixel at row r, column c is (c + 0.5, r + 0.5).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Final

import highdicom as hd
import numpy as np
from highdicom import PresentationLUTShapeValues, PresentationLUTTransformation
from highdicom.color import CIELabColor
from highdicom.pr import (
    AnnotationUnitsValues,
    GraphicAnnotation,
    GraphicLayer,
    GraphicObject,
    GraphicTypeValues,
    GrayscaleSoftcopyPresentationState,
    SoftcopyVOILUTTransformation,
    TextObject,
)
from pydicom import Dataset
from skimage.measure import approximate_polygon, find_contours

from integrations.dicom.render import first_value, image_window, modality_values
from integrations.dicom.result_common import (
    BUILD_CHARACTER_SET,
    BuildContext,
    PlacedHeatmap,
    ResultKind,
    by_series,
    finish_series,
    placed_heatmaps,
    with_type2_defaults,
)
from integrations.dicom.sr import tracking_uid
from integrations.settings import ResultsSettings
from models.results import AnalysisResult

CONTENT_LABEL: Final = "AI_HEATMAP"
TEXT_LAYER: Final = "AI_FINDING_TEXT"
# Outer contour yellow, inner ones orange then red: visible on grey, ordered by intensity.
LEVEL_COLOURS: Final = ("yellow", "orange", "red", "magenta")
TEXT_COLOUR: Final = "yellow"
MIN_CONTOUR_AREA_PX: Final = 2.0
SIMPLIFY_TOLERANCE_PX: Final = 0.35


def contour_layer_name(index: int) -> str:
    """The graphic layer of contour level ``index`` (0 = lowest, outermost)."""
    return f"AI_CONTOUR_{index + 1}"


def heatmap_contours(
    values: np.ndarray,
    levels: Sequence[float],
    *,
    max_contours: int = 8,
    min_area: float = MIN_CONTOUR_AREA_PX,
) -> list[list[np.ndarray]]:
    """Closed iso-contours of ``values`` at each of ``levels`` (fractions of the peak).

    Returns one list per level of (N, 2) arrays of (column, row) PIXEL coordinates, first
    point repeated last, largest region first, at most ``max_contours`` per level. A flat
    zero map has no contours.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError("values must be a 2D array")
    if not levels or any(not 0 < level < 1 for level in levels):
        raise ValueError("levels must be fractions strictly between 0 and 1")
    if max_contours < 1:
        raise ValueError("max_contours must be at least 1")
    peak = float(values.max()) if values.size else 0.0
    rows, columns = values.shape
    result: list[list[np.ndarray]] = []
    # Zero padding closes contours that touch the border.
    padded = np.pad(values, 1, mode="constant", constant_values=0.0)
    for level in levels:
        if peak <= 0:
            result.append([])
            continue
        polygons = []
        for contour in find_contours(padded, level * peak):
            contour = approximate_polygon(contour, tolerance=SIMPLIFY_TOLERANCE_PX)
            points = np.column_stack([contour[:, 1] - 1 + 0.5, contour[:, 0] - 1 + 0.5])
            points[:, 0] = np.clip(points[:, 0], 0.0, columns)
            points[:, 1] = np.clip(points[:, 1], 0.0, rows)
            if not np.allclose(points[0], points[-1]):
                points = np.vstack([points, points[:1]])
            points = _exact_float32(points)
            area = _polygon_area(points)
            if len(points) >= 4 and area >= min_area:
                polygons.append((area, points))
        polygons.sort(key=lambda item: -item[0])
        result.append([points for _, points in polygons[:max_contours]])
    return result


def build_presentation_states(
    analysis: AnalysisResult,
    sources: Sequence[Dataset],
    *,
    profile: ResultsSettings,
    generation: int = 1,
    now: datetime.datetime | None = None,
) -> list[GrayscaleSoftcopyPresentationState]:
    """One GSPS per analysed series that has heatmaps; [] when there are none.

    ``sources`` must include the heatmaps' images with their pixel data (for images without a
    VOI window one is derived from the values).
    """
    context = BuildContext.for_study(analysis, sources, profile, generation, now)
    placed = placed_heatmaps(analysis, sources)
    states = []
    for index, (series_uid, items) in enumerate(by_series(placed).items()):
        states.append(_presentation_state(context, series_uid, items, index))
    return states


def _presentation_state(
    context: BuildContext, series_uid: str, items: list[PlacedHeatmap], index: int
) -> GrayscaleSoftcopyPresentationState:
    profile = context.profile
    kind = ResultKind.GSPS
    images: list[Dataset] = []
    for item in items:
        if all(image.SOPInstanceUID != item.source.SOPInstanceUID for image in images):
            images.append(with_type2_defaults(item.source))
    first = images[0]
    if int(first.get("SamplesPerPixel", 1)) != 1:
        raise ValueError("a GSPS needs grey-scale source images (one sample per pixel)")
    layers = [
        GraphicLayer(
            layer_name=contour_layer_name(index),
            order=index + 1,
            description=f"AI heatmap iso-contour at {level:.0%} of peak",
            display_color=CIELabColor.from_string(LEVEL_COLOURS[index % len(LEVEL_COLOURS)]),
        )
        for index, level in enumerate(profile.contour_levels)
    ]
    text_layer = GraphicLayer(
        layer_name=TEXT_LAYER,
        order=len(layers) + 1,
        description="AI finding and probability",
        display_color=CIELabColor.from_string(TEXT_COLOUR),
    )
    annotations: list[GraphicAnnotation] = []
    for item in items:
        annotations.extend(_annotations(context, item, layers, text_layer))
    model = context.analysis.model
    state = GrayscaleSoftcopyPresentationState(
        specific_character_set=BUILD_CHARACTER_SET,
        referenced_images=images,
        series_instance_uid=context.series_instance_uid(kind),
        series_number=context.series_number(kind),
        sop_instance_uid=context.sop_instance_uid(kind, series_uid),
        instance_number=context.instance_number(index),
        manufacturer=profile.manufacturer,
        manufacturer_model_name=model.name[:64],
        software_versions=context.software_versions,  # type: ignore[arg-type]
        device_serial_number=context.device_serial_number,
        content_label=CONTENT_LABEL,
        content_description=f"AI heatmap contours, {model.name} {model.version}"[:64],
        graphic_annotations=annotations or None,
        graphic_layers=[*layers, text_layer],
        institution_name=context.institution_name(first),
        voi_lut_transformations=_voi_transformations(images, items),
        modality_lut_transformation=_classic_multiframe_rescale(first),
        presentation_lut_transformation=PresentationLUTTransformation(
            presentation_lut_shape=(
                PresentationLUTShapeValues.INVERSE
                if str(first.get("PhotometricInterpretation")) == "MONOCHROME1"
                else PresentationLUTShapeValues.IDENTITY
            )
        ),
    )
    return finish_series(state, context=context, kind=kind, source=first)


def _annotations(
    context: BuildContext,
    item: PlacedHeatmap,
    layers: list[GraphicLayer],
    text_layer: GraphicLayer,
) -> list[GraphicAnnotation]:
    finding = item.finding
    track_uid = tracking_uid(context.analysis, finding, item.source)
    contours = heatmap_contours(
        item.values,
        context.profile.contour_levels,
        max_contours=context.profile.max_contours_per_level,
    )
    annotations = []
    for layer, polygons in zip(layers, contours, strict=True):
        if not polygons:
            continue
        annotations.append(
            GraphicAnnotation(
                referenced_images=[item.source],
                graphic_layer=layer,
                graphic_objects=[
                    GraphicObject(
                        graphic_type=GraphicTypeValues.POLYLINE,
                        graphic_data=points,
                        units=AnnotationUnitsValues.PIXEL,
                        tracking_id=finding.label,
                        tracking_uid=track_uid,
                    )
                    for points in polygons
                ],
                referenced_frame_number=item.frame,
            )
        )
    rows, columns = item.values.shape
    peak_row, peak_column = np.unravel_index(int(np.argmax(item.values)), item.values.shape)
    text = f"{finding.code.meaning} {finding.probability:.0%} (AI)"
    annotations.append(
        GraphicAnnotation(
            referenced_images=[item.source],
            graphic_layer=text_layer,
            text_objects=[
                TextObject(
                    text_value=text,
                    units=AnnotationUnitsValues.PIXEL,
                    bounding_box=_text_box(text, contours, rows, columns),
                    anchor_point=(float(peak_column) + 0.5, float(peak_row) + 0.5),
                    anchor_point_visible=True,
                    tracking_id=finding.label,
                    tracking_uid=track_uid,
                )
            ],
            referenced_frame_number=item.frame,
        )
    )
    return annotations


def _text_box(
    text: str, contours: list[list[np.ndarray]], rows: int, columns: int
) -> tuple[float, float, float, float]:
    """A box for ``text`` just above (or below) the outermost contour, inside the image."""
    height = max(8.0, round(rows * 0.035))
    width = min(float(columns), 0.6 * height * len(text))
    outer = next((polygons for polygons in contours if polygons), [])
    if outer:
        points = np.vstack(outer)
        left = float(points[:, 0].min())
        top, bottom = float(points[:, 1].min()), float(points[:, 1].max())
    else:
        left, top, bottom = 0.0, height + 2, height + 2
    box_top = top - height - 2 if top - height - 2 >= 0 else bottom + 2
    box_top = min(max(box_top, 0.0), rows - height)
    box_left = min(max(left, 0.0), columns - width)
    corners = _exact_float32(np.array([box_left, box_top, box_left + width, box_top + height]))
    return (float(corners[0]), float(corners[1]), float(corners[2]), float(corners[3]))


def _voi_transformations(
    images: list[Dataset], items: list[PlacedHeatmap]
) -> list[SoftcopyVOILUTTransformation]:
    """The source's first VOI window per image (grouped when equal), or one from its values."""
    frames = {str(item.source.SOPInstanceUID): item.frame for item in items}
    windows: dict[tuple[float, float, str], list[Dataset]] = {}
    for image in images:
        center = first_value(image.get("WindowCenter"))
        width = first_value(image.get("WindowWidth"))
        function = str(image.get("VOILUTFunction", "LINEAR") or "LINEAR")
        if center is None or width is None or width < 1:
            center, width, function = image_window(
                image, modality_values(image, frames.get(str(image.SOPInstanceUID)))
            )
        windows.setdefault((center, width, function), []).append(image)
    transformations = []
    for (center, width, function), group in windows.items():
        references = (
            hd.ReferencedImageSequence(referenced_images=group) if len(windows) > 1 else None
        )
        transformation = SoftcopyVOILUTTransformation(
            window_center=center,
            window_width=width,
            voi_lut_function=function if function != "LINEAR" else None,
            referenced_images=references,
        )
        # Set here: highdicom 0.28 splits a single explanation string into characters.
        transformation.WindowCenterWidthExplanation = ["source image window"]
        transformations.append(transformation)
    return transformations


def _classic_multiframe_rescale(image: Dataset) -> hd.ModalityLUTTransformation | None:
    """The rescale of a classic (not enhanced) multi-frame image, which highdicom cannot find.

    highdicom looks for rescale in the functional groups of multi-frame images; classic
    multi-frame images keep it at the top level. None: highdicom copies it itself.
    """
    if int(image.get("NumberOfFrames", 1) or 1) <= 1 or "SharedFunctionalGroupsSequence" in image:
        return None
    rescale_type = str(image.get("RescaleType", "") or "")
    if not rescale_type:
        rescale_type = "HU" if str(image.get("Modality", "")) == "CT" else "US"
    return hd.ModalityLUTTransformation(
        rescale_intercept=float(image.get("RescaleIntercept", 0) or 0),
        rescale_slope=float(image.get("RescaleSlope", 1) or 1),
        rescale_type=rescale_type,
    )


def _exact_float32(values: np.ndarray) -> np.ndarray:
    """Round to 1/256 pixel: exactly representable in the FL (float32) values GSPS stores."""
    return np.round(np.asarray(values, dtype=np.float64) * 256.0) / 256.0


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
