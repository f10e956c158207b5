"""Secondary Capture images with the heatmap blended in colour: the universal fallback (pure).

For viewers that show no presentation state, segmentation or parametric map: one RGB
Secondary Capture per heatmap, the source rendered with its own window (MONOCHROME1 inverted
as a viewer would), the heatmap blended in a jet colour map, the finding and model burnt in at
the top and the site's caption ("AI overlay — not for primary diagnosis") at the bottom.
Burned In Annotation is YES and the image is DERIVED\\SECONDARY, referencing its source.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Final

import numpy as np
from highdicom.sc import SCImage
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from integrations.dicom.render import blend_heatmap, draw_banner, grayscale
from integrations.dicom.result_common import (
    BUILD_CHARACTER_SET,
    BuildContext,
    PlacedHeatmap,
    ResultKind,
    finish_series,
    header_copy,
    placed_heatmaps,
)
from integrations.settings import ResultsSettings
from models.results import AnalysisResult

# Patient direction letters of the +x, +y, +z patient axes (LPS), and their opposites.
_AXIS_LETTERS: Final = (("L", "R"), ("P", "A"), ("H", "F"))


def build_secondary_captures(
    analysis: AnalysisResult,
    sources: Sequence[Dataset],
    *,
    profile: ResultsSettings,
    generation: int = 1,
    now: datetime.datetime | None = None,
) -> list[SCImage]:
    """One colour Secondary Capture per heatmap of ``analysis``; [] when there are none."""
    context = BuildContext.for_study(analysis, sources, profile, generation, now)
    return [
        _secondary_capture(context, item, index)
        for index, item in enumerate(placed_heatmaps(analysis, sources))
    ]


def overlay_picture(item: PlacedHeatmap, profile: ResultsSettings, title: str) -> np.ndarray:
    """The RGB picture of one heatmap: blended source, title on top, caption at the bottom."""
    gray = grayscale(item.source, None, item.frame)
    picture = blend_heatmap(
        gray, item.values, opacity=profile.overlay_opacity, floor=profile.overlay_floor
    )
    picture = draw_banner(picture, [title], at_bottom=False)
    return draw_banner(picture, [profile.secondary_capture_caption], at_bottom=True)


def patient_orientation(source: Dataset) -> tuple[str, str]:
    """Row and column directions: the source's Patient Orientation, else from its orientation cosines."""
    given = source.get("PatientOrientation")
    if given and len(given) == 2 and all(str(value) for value in given):
        return _main_letter(str(given[0])), _main_letter(str(given[1]))
    cosines = source.get("ImageOrientationPatient")
    if cosines and len(cosines) == 6:
        values = [float(value) for value in cosines]
        return _direction_letter(values[:3]), _direction_letter(values[3:])
    raise ValueError(
        "sources need Patient Orientation or Image Orientation (Patient) for a Secondary Capture"
    )


def _main_letter(direction: str) -> str:
    return direction.strip()[:1].upper()


def _direction_letter(vector: list[float]) -> str:
    axis = int(np.argmax(np.abs(vector)))
    positive, negative = _AXIS_LETTERS[axis]
    return positive if vector[axis] > 0 else negative


def _secondary_capture(context: BuildContext, item: PlacedHeatmap, index: int) -> SCImage:
    kind = ResultKind.SECONDARY_CAPTURE
    model = context.analysis.model
    finding = item.finding
    title = f"AI: {finding.code.meaning} {finding.probability:.0%} · {model.name} {model.version}"
    picture = overlay_picture(item, context.profile, title)
    source = item.source
    header = header_copy(source)
    spacing = source.get("PixelSpacing")
    image = SCImage.from_ref_dataset(
        specific_character_set=BUILD_CHARACTER_SET,
        ref_dataset=header,
        pixel_array=picture,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=context.series_instance_uid(kind),
        series_number=context.series_number(kind),
        sop_instance_uid=context.sop_instance_uid(
            kind, str(source.SOPInstanceUID), item.frame or 0, finding.label
        ),
        instance_number=context.instance_number(index),
        manufacturer=context.profile.manufacturer,
        # highdicom annotates this as ints; pixel spacing is decimal (DS).
        pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing else None,  # type: ignore[arg-type]
        patient_orientation=patient_orientation(source),
        manufacturer_model_name=model.name[:64],
        software_versions=context.software_versions,
        device_serial_number=context.device_serial_number,
        institution_name=context.institution_name(source),
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    image.DateOfSecondaryCapture = context.now.strftime("%Y%m%d")  # type: ignore[assignment]
    image.TimeOfSecondaryCapture = context.now.strftime("%H%M%S")  # type: ignore[assignment]
    image.ImageType = ["DERIVED", "SECONDARY"]
    image.BurnedInAnnotation = "YES"
    image.RecognizableVisualFeatures = "YES"
    image.ImageComments = context.profile.secondary_capture_caption
    image.DerivationDescription = (
        f"{finding.code.meaning} heatmap of {model.name} {model.version} blended over the source"
    )[:1024]
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if item.frame:
        reference.ReferencedFrameNumber = item.frame
    image.SourceImageSequence = [reference]
    return finish_series(
        image,
        context=context,
        kind=kind,
        source=source,
        description=f"{context.profile.secondary_capture_caption} ({model.name})",
    )
