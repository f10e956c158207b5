"""Secondary Capture, fractional Segmentation and Saliency Parametric Map of the heatmaps."""

from __future__ import annotations

import io

import highdicom as hd
import numpy as np
import pytest
from pydicom.uid import SegmentationStorage

from integrations.dicom.parametric_map import build_parametric_maps
from integrations.dicom.render import grayscale
from integrations.dicom.result_common import ResultKind, decode_dataset, encode_dataset
from integrations.dicom.secondary_capture import build_secondary_captures, patient_orientation
from integrations.dicom.segmentation import build_segmentations
from integrations.dicom.sr import tracking_uid
from integrations.settings import SECONDARY_CAPTURE_CAPTION
from tests.dciodvfy import (
    RESULT_OBJECT_WARNINGS,
    assert_conformant,
)
from tests.unit.results import synthetic

NOW = synthetic.FIXED_NOW


def test_secondary_capture_blends_the_heatmap_on_the_lesion_and_burns_the_caption(chest, profile):
    image, mask, lesion, analysis = chest
    (capture,) = build_secondary_captures(analysis, [image], profile=profile, now=NOW)
    capture = decode_dataset(encode_dataset(capture))
    picture = capture.pixel_array
    assert picture.shape == (image.Rows, image.Columns, 3)
    assert capture.PhotometricInterpretation == "RGB"
    gray = grayscale(image).astype(int)
    tinted = np.abs(picture.astype(int) - gray[..., None]).sum(axis=2) > 30
    banner = np.zeros(mask.shape, bool)
    banner[:20], banner[-20:] = True, True
    # Colour where the heatmap is, untouched grey elsewhere (outside the banners).
    assert tinted[mask].mean() > 0.95
    far = ~banner & (
        np.hypot(
            *np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]] - np.array(lesion.center)[:, None, None]
        )
        > 60
    )
    assert tinted[far].mean() < 0.01
    peak = tuple(int(v) for v in lesion.center)
    red, _green, blue = picture[peak].astype(int)
    assert red > blue + 40  # the hot end of the colour map
    # The caption banner: black band with light text at the bottom of the picture.
    bottom = picture[-12:]
    assert (bottom.max(axis=2) < 10).mean() > 0.5 and (bottom.min(axis=2) > 200).any()
    assert capture.BurnedInAnnotation == "YES"
    assert capture.ImageComments == SECONDARY_CAPTURE_CAPTION
    assert capture.SourceImageSequence[0].ReferencedSOPInstanceUID == image.SOPInstanceUID
    assert list(capture.ImageType[:2]) == ["DERIVED", "SECONDARY"]
    assert capture.SpecificCharacterSet == "ISO_IR 192"  # the caption's dash is not Latin-1
    assert str(capture.PatientName) == "Müller^Jürgen"
    assert SECONDARY_CAPTURE_CAPTION in capture.SeriesDescription


def test_patient_orientation_from_cosines_when_the_source_has_none(head_ct):
    images, _, _, _ = head_ct
    assert patient_orientation(images[0]) == ("L", "P")
    image, _ = synthetic.chest_radiograph()
    assert patient_orientation(image) == ("L", "F")
    del image.PatientOrientation
    with pytest.raises(ValueError, match="Orientation"):
        patient_orientation(image)


def segment_frames(seg) -> dict[tuple[str, int], np.ndarray]:
    """(source SOP Instance UID, segment number) -> fractional values in [0, 1], read with pydicom.

    highdicom 0.28 cannot read back a SEG of a projection image (its Pixel Measures have no
    Slice Thickness, which the IOD does not require there), so the frames are read directly.
    """
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    frames = {}
    shared = seg.SharedFunctionalGroupsSequence[0]
    for index, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        identification = (
            item.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
        )
        segment = int(identification[0].ReferencedSegmentNumber)
        frames[(str(source), segment)] = pixels[index] / float(seg.MaximumFractionalValue)
    return frames


@pytest.mark.parametrize("scenario", ["chest", "head_ct"])
def test_segmentation_is_fractional_and_holds_the_heatmap(scenario, request, profile):
    sources, _, _, analysis = request.getfixturevalue(scenario)
    sources = sources if isinstance(sources, list) else [sources]
    segmentations, skipped = build_segmentations(analysis, sources, profile=profile, now=NOW)
    assert skipped == []
    (segmentation,) = segmentations
    data = encode_dataset(segmentation)
    assert_conformant(data, allowed_warnings=RESULT_OBJECT_WARNINGS)
    seg = decode_dataset(data)
    assert seg.SOPClassUID == SegmentationStorage
    assert seg.SegmentationType == "FRACTIONAL"
    assert seg.SegmentationFractionalType == "PROBABILITY"
    finding = analysis.findings[0]
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == finding.label
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == finding.code.value
    assert segment.TrackingUID == tracking_uid(analysis, finding, sources[0])
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    frames = segment_frames(seg)
    for heatmap in analysis.heatmaps:
        stored = frames[(heatmap.image.sop_instance_uid, 1)]
        assert np.abs(stored - heatmap.values).max() <= 0.5 / 255 + 1e-6
    if "FrameOfReferenceUID" in sources[0]:
        assert hd.seg.segread(io.BytesIO(data)).number_of_segments == 1
    else:
        assert list(seg.PatientOrientation) == list(sources[0].PatientOrientation)


def test_parametric_map_is_saliency_with_the_heatmap_values(head_ct, profile):
    images, _, _, analysis = head_ct
    maps, skipped = build_parametric_maps(analysis, images, profile=profile, now=NOW)
    assert skipped == []
    (parametric_map,) = maps
    data = encode_dataset(parametric_map)
    assert_conformant(
        data, allowed_warnings=(*RESULT_OBJECT_WARNINGS, r"Unrecognized defined term <QUANTITY>")
    )
    pm = decode_dataset(data)
    mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    quantity = mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0]
    assert (quantity.CodeValue, quantity.CodingSchemeDesignator, quantity.CodeMeaning) == (
        "130404",
        "DCM",
        "Saliency",
    )
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "1"
    values = pm.pixel_array
    expected = np.stack([heatmap.values for heatmap in analysis.heatmaps])
    assert values.reshape(expected.shape) == pytest.approx(expected, abs=1e-6)
    assert pm.ContentLabel == "SALIENCY"


def test_parametric_map_is_skipped_for_projection_images(chest, profile):
    image, _, _, analysis = chest
    maps, skipped = build_parametric_maps(analysis, [image], profile=profile, now=NOW)
    assert maps == []
    assert [item.kind for item in skipped] == [ResultKind.PARAMETRIC_MAP]
    assert "Frame of Reference" in skipped[0].reason


def test_secondary_capture_passes_dciodvfy(head_ct, profile):
    images, _, _, analysis = head_ct
    captures = build_secondary_captures(analysis, images, profile=profile, now=NOW)
    assert len(captures) == len(analysis.heatmaps)
    for capture in captures:
        result = assert_conformant(encode_dataset(capture), allowed_warnings=RESULT_OBJECT_WARNINGS)
        assert result.iod == "SCImage"
