"""The model sees what the viewer shows: model input and rendered image agree on one dataset.

Both go through :mod:`integrations.dicom.voi` (pydicom's Modality LUT, VOI LUT and windowing);
these tests pin that for every VOI form the header can carry.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from integrations.dicom.render import render
from models.phantoms.chest import chest_xray_study
from models.preprocess import decode_frames, display_values

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


def chest(**options: object) -> Dataset:
    return chest_xray_study(3, ("Effusion",), size=128, **options).datasets[0]  # type: ignore[arg-type]


def assert_model_sees_the_rendering(dataset: Dataset, frame: int | None = None) -> np.ndarray:
    """The model's [0, 1] input equals the viewer's 8-bit picture up to quantisation."""
    frames = decode_frames(dataset)
    model = display_values(frames[(frame or 1) - 1]).astype(np.float64)
    shown = render(dataset, frame=frame).gray.astype(np.float64)
    # the viewer truncates x * 255 to an integer: the model's value lies within one grey level
    difference = model * 255.0 - shown
    assert float(difference.min()) > -1e-3 and float(difference.max()) < 1.0 + 1e-3
    assert float(np.ptp(shown)) > 100  # a real picture, not a blank one agreeing trivially
    return model


def test_voi_lut_sequence_agrees() -> None:
    dataset = chest(voi="lut")
    assert "VOILUTSequence" in dataset and "WindowCenter" not in dataset
    assert_model_sees_the_rendering(dataset)


def test_first_of_several_windows_is_used_by_both() -> None:
    dataset = chest()
    center, width = float(dataset.WindowCenter), float(dataset.WindowWidth)
    dataset.WindowCenter = [center, center + 800]
    dataset.WindowWidth = [width, width / 4]
    first = assert_model_sees_the_rendering(dataset)
    single = chest()
    np.testing.assert_allclose(first, display_values(decode_frames(single)[0]), atol=1e-6)


def test_sigmoid_window_agrees_and_differs_from_linear() -> None:
    dataset = chest()
    dataset.VOILUTFunction = "SIGMOID"
    sigmoid = assert_model_sees_the_rendering(dataset)
    linear = display_values(decode_frames(chest())[0])
    assert float(np.abs(sigmoid - linear).max()) > 0.05


def test_monochrome1_is_inverted_by_both() -> None:
    dataset = chest(photometric="MONOCHROME1")
    inverted = assert_model_sees_the_rendering(dataset)
    upright = display_values(decode_frames(chest())[0])
    assert float(np.abs(inverted - upright).max()) < 0.01


def test_rescale_slope_and_intercept_agree() -> None:
    dataset = chest()
    dataset.VOILUTFunction = "LINEAR_EXACT"  # scale invariant: the picture must not change
    plain = display_values(decode_frames(dataset)[0])
    dataset.RescaleSlope, dataset.RescaleIntercept = 0.5, -1024.0
    dataset.WindowCenter = f"{float(dataset.WindowCenter) * 0.5 - 1024.0:.4f}"
    dataset.WindowWidth = f"{float(dataset.WindowWidth) * 0.5:.4f}"
    rescaled = assert_model_sees_the_rendering(dataset)
    np.testing.assert_allclose(rescaled, plain, atol=1e-5)


def enhanced_ct() -> Dataset:
    """Two frames whose rescale and window live only in the per-frame functional groups."""
    rows = columns = 32
    ramp = np.linspace(0, 2000, rows * columns, dtype=np.float64).reshape(rows, columns)
    pixels = np.stack([ramp, ramp[::-1]]).astype(np.uint16)
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = ENHANCED_CT
    dataset.SOPInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.Modality = "CT"
    dataset.Rows, dataset.Columns, dataset.NumberOfFrames = rows, columns, 2
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.tobytes()
    groups = []
    for intercept, (center, width) in ((-1024.0, (40.0, 400.0)), (-1000.0, (400.0, 1800.0))):
        group = Dataset()
        transformation = Dataset()
        transformation.RescaleSlope, transformation.RescaleIntercept = 1.0, intercept
        group.PixelValueTransformationSequence = DicomSequence([transformation])
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = center, width
        group.FrameVOILUTSequence = DicomSequence([voi])
        groups.append(group)
    dataset.PerFrameFunctionalGroupsSequence = DicomSequence(groups)
    return dataset


@pytest.mark.parametrize("frame", [1, 2])
def test_enhanced_per_frame_rescale_and_window_agree(frame: int) -> None:
    dataset = enhanced_ct()
    model = assert_model_sees_the_rendering(dataset, frame)
    decoded = decode_frames(dataset)[frame - 1]
    group = dataset.PerFrameFunctionalGroupsSequence[frame - 1]
    intercept = float(group.PixelValueTransformationSequence[0].RescaleIntercept)
    raw = dataset.pixel_array[frame - 1].astype(np.float64)
    np.testing.assert_allclose(decoded.values, raw + intercept)
    voi = group.FrameVOILUTSequence[0]
    center, width = float(voi.WindowCenter) - 0.5, float(voi.WindowWidth) - 1.0
    expected = np.clip((raw + intercept - center) / width + 0.5, 0.0, 1.0)  # PS3.3 C.11.2.1.2.1
    np.testing.assert_allclose(model, expected, atol=1e-5)
