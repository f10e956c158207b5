"""DICOM preprocessing: VOI, MONOCHROME1, LUTs, compressed syntaxes, slice order, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import Dataset

from models.package import WindowSpec
from models.phantoms.chest import chest_xray_study
from models.preprocess import (
    NotAnalysable,
    Window,
    apply_window,
    decode_frames,
    display_values,
    fit,
    window_channels,
)


def _shown(**options: object) -> np.ndarray:
    study = chest_xray_study(3, ("Effusion",), size=128, **options)  # type: ignore[arg-type]
    return display_values(decode_frames(study.datasets[0])[0])


def test_linear_window_follows_ps3_3_formula() -> None:
    values = np.array([-1000.0, 0.0, 39.5, 40.0, 79.5, 80.0, 1000.0], dtype=np.float32)
    shown = apply_window(values, Window(40.0, 80.0))
    # c - 0.5 - (w-1)/2 = 0 maps to 0, c - 0.5 + (w-1)/2 = 79 to 1, the centre c - 0.5 to 0.5
    np.testing.assert_allclose(shown, [0.0, 0.0, 0.5, 0.5063291, 1.0, 1.0, 1.0], atol=1e-6)
    exact = apply_window(values, Window(40.0, 80.0, "LINEAR_EXACT"))
    assert exact[3] == pytest.approx(0.5)
    sigmoid = apply_window(values, Window(40.0, 80.0, "SIGMOID"))
    assert sigmoid[3] == pytest.approx(0.5) and 0 < sigmoid[1] < 0.5 < sigmoid[5] < 1


def test_monochrome1_is_inverted_to_look_like_monochrome2() -> None:
    normal = _shown(photometric="MONOCHROME2")
    inverted_storage = _shown(photometric="MONOCHROME1")
    study = chest_xray_study(3, ("Effusion",), size=128, photometric="MONOCHROME1")
    raw = decode_frames(study.datasets[0])[0].values
    assert study.datasets[0].PhotometricInterpretation == "MONOCHROME1"
    # stored values are reversed, yet what the network sees is the same image
    assert np.corrcoef(raw.ravel(), normal.ravel())[0, 1] < -0.9
    assert float(np.abs(normal - inverted_storage).max()) < 0.01


def test_voi_lut_sequence_is_applied() -> None:
    study = chest_xray_study(3, (), size=128, voi="lut")
    frame = decode_frames(study.datasets[0])[0]
    assert "VOILUTSequence" in study.datasets[0] and "WindowCenter" not in study.datasets[0]
    shown = display_values(frame)
    lut = np.asarray(study.datasets[0].VOILUTSequence[0].LUTData, dtype=np.float32)
    expected = lut[frame.values.astype(int)] / 4095.0
    np.testing.assert_allclose(shown, expected, atol=1e-6)


@pytest.mark.parametrize("syntax", ["rle", "jpeg-ls", "jpeg2000"])
def test_compressed_transfer_syntaxes_decode_to_the_same_pixels(syntax: str) -> None:
    plain = chest_xray_study(4, ("Mass",), size=128)
    packed = chest_xray_study(4, ("Mass",), size=128, transfer_syntax=syntax)  # type: ignore[arg-type]
    assert packed.datasets[0].file_meta.TransferSyntaxUID.is_compressed
    np.testing.assert_array_equal(
        decode_frames(plain.datasets[0])[0].values, decode_frames(packed.datasets[0])[0].values
    )


def test_rgb_image_is_not_analysable_with_the_reason() -> None:
    dataset = chest_xray_study(1, (), size=64).datasets[0]
    dataset.PhotometricInterpretation = "RGB"
    with pytest.raises(NotAnalysable, match="photometric interpretation RGB"):
        decode_frames(dataset)


def test_corrupt_compressed_pixel_data_is_not_analysable() -> None:
    dataset = chest_xray_study(1, (), size=64, transfer_syntax="jpeg-ls").datasets[0]
    # a valid encapsulation (empty offset table, one fragment) around bytes that are no JPEG-LS
    dataset.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00\xfe\xff\x00\xe0\x08\x00\x00\x00garbage!"
    with pytest.raises(NotAnalysable, match="cannot be decoded"):
        decode_frames(dataset)


def test_missing_pixel_data_is_not_analysable() -> None:
    dataset = Dataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    dataset.SOPInstanceUID = "1.2.3"
    dataset.SeriesInstanceUID = "1.2.4"
    with pytest.raises(NotAnalysable, match="no pixel data"):
        decode_frames(dataset)


def test_fit_crops_centre_square_and_maps_back() -> None:
    image = np.zeros((100, 60), dtype=np.float32)
    image[40:60, 20:40] = 1.0
    small, geometry = fit(image, (30, 30), "center_square")
    assert small.shape == (30, 30)
    assert (geometry.top, geometry.left, geometry.height, geometry.width) == (20, 0, 60, 60)
    back = geometry.to_image(small)
    assert back.shape == (100, 60)
    row, column = np.unravel_index(np.argmax(back), back.shape)
    assert 40 <= row < 60 and 20 <= column < 40
    assert back[:20].max() == 0.0


def test_manifest_windows_follow_their_voi_function() -> None:
    brain = WindowSpec(name="brain", center=40.0, width=80.0)
    assert brain.function == "LINEAR_EXACT"  # exactly 0..80 HU onto [0, 1]
    sigmoid = WindowSpec(name="soft", center=40.0, width=80.0, function="SIGMOID")
    values = np.array([[0.0, 40.0, 80.0]], dtype=np.float32)
    channels = window_channels(
        values, [Window(spec.center, spec.width, spec.function) for spec in (brain, sigmoid)]
    )
    np.testing.assert_allclose(channels[0], [[0.0, 0.5, 1.0]], atol=1e-6)
    np.testing.assert_allclose(
        channels[1], [[1 / (1 + np.e**2), 0.5, 1 / (1 + np.e**-2)]], atol=1e-6
    )
    with pytest.raises(ValueError, match="LINEAR window needs a width"):
        WindowSpec(name="thin", center=0.0, width=0.5, function="LINEAR")
