"""The overlay lands on the anatomy: render image + GSPS and check the contour encloses the lesion.

Our renderer draws the GSPS graphics (dcmp2pgm does not); dcmp2pgm is the reference for the
grey-scale part (modality LUT, VOI window, presentation LUT), which must match pixel for pixel.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from integrations.dicom.gsps import TEXT_LAYER, build_presentation_states, contour_layer_name
from integrations.dicom.render import render, window_to_8bit
from integrations.dicom.result_common import decode_dataset, encode_dataset
from integrations.settings import ResultsSettings
from tests.unit.results import synthetic

NOW = synthetic.FIXED_NOW
PROFILE = ResultsSettings()
DCMP2PGM = shutil.which("dcmp2pgm")


def enclosed_region(outline: np.ndarray) -> np.ndarray:
    """Pixels on or inside the drawn closed contours."""
    return ndimage.binary_fill_holes(outline)


def render_overlay(image, analysis):
    (state,) = build_presentation_states(analysis, [image], profile=PROFILE, now=NOW)
    state = decode_dataset(encode_dataset(state))
    image = decode_dataset(encode_dataset(image))
    return image, state, render(image, state)


LESION_CASES = [
    pytest.param(
        synthetic.Lesion((205.0, 78.0), (16.0, 12.0)), (320, 256), "MONOCHROME2", id="lower-left"
    ),
    pytest.param(
        synthetic.Lesion((60.0, 200.0), (10.0, 22.0)),
        (320, 256),
        "MONOCHROME1",
        id="upper-right-mono1",
    ),
    pytest.param(
        synthetic.Lesion((14.0, 20.0), (9.0, 9.0)), (200, 300), "MONOCHROME2", id="at-the-corner"
    ),
]


@pytest.mark.parametrize(("lesion", "shape", "photometric"), LESION_CASES)
def test_drawn_contour_encloses_the_lesion(lesion, shape, photometric):
    image, mask = synthetic.chest_radiograph(lesion=lesion, shape=shape, photometric=photometric)
    image, _, rendering = render_overlay(image, synthetic.chest_analysis(image, lesion))
    outer = enclosed_region(rendering.layers[contour_layer_name(0)])
    inner = enclosed_region(rendering.layers[contour_layer_name(1)])
    assert (outer & mask).sum() == mask.sum(), "the outer contour must enclose the whole lesion"
    assert outer.sum() < 4 * mask.sum(), "the outer contour must hug the lesion"
    assert inner.sum() < outer.sum() and (inner & ~outer).sum() == 0
    centre = np.array(ndimage.center_of_mass(mask))
    assert np.linalg.norm(np.array(ndimage.center_of_mass(inner)) - centre) < 1.5
    assert rendering.texts == ("Pneumothorax 91% (AI)",)
    # The contour really is drawn into the picture, in the layer's colour.
    drawn = rendering.layers[contour_layer_name(0)]
    assert (rendering.rgb[drawn][:, 2] < rendering.rgb[drawn][:, 0]).mean() > 0.9  # yellow-ish


def test_a_heatmap_off_the_lesion_gives_a_contour_off_the_lesion():
    """The check above can fail: a map peaking elsewhere does not enclose the lesion."""
    lesion = synthetic.Lesion((205.0, 78.0), (16.0, 12.0))
    image, mask = synthetic.chest_radiograph(lesion=lesion)
    elsewhere = synthetic.chest_analysis(image, synthetic.Lesion((78.0, 205.0), (16.0, 12.0)))
    _, _, rendering = render_overlay(image, elsewhere)
    outer = enclosed_region(rendering.layers[contour_layer_name(0)])
    assert (outer & mask).sum() == 0


def test_contours_on_the_lesion_slice_of_a_ct(head_ct):
    images, masks, _, analysis = head_ct
    (state,) = build_presentation_states(analysis, images, profile=PROFILE, now=NOW)
    for image, mask in zip(images, masks, strict=True):
        rendering = render(image, state)
        if mask.any():
            outer = enclosed_region(rendering.layers[contour_layer_name(0)])
            assert (outer & mask).sum() == mask.sum()
        else:
            assert rendering.layers == {}  # nothing is drawn on slices without a heatmap


def test_the_annotation_of_a_multiframe_image_is_drawn_on_its_frame_only(profile):
    image, mask = synthetic.multiframe_image(lesion_frame=3)
    frame_ref = synthetic.reference(image, 3)
    base = synthetic.chest_analysis(image, synthetic.Lesion((30.0, 50.0), (7.0, 9.0)))
    finding = dataclasses.replace(base.findings[0], images=(frame_ref,))
    analysis = dataclasses.replace(
        base,
        findings=(finding,),
        heatmaps=(dataclasses.replace(base.heatmaps[0], image=frame_ref),),
        analysed_images=(frame_ref,),
    )
    (state,) = build_presentation_states(analysis, [image], profile=profile, now=NOW)
    on_frame = render(image, state, frame=3)
    assert (enclosed_region(on_frame.layers[contour_layer_name(0)]) & mask).sum() == mask.sum()
    assert render(image, state, frame=2).layers == {}


@pytest.mark.skipif(DCMP2PGM is None, reason="dcmtk dcmp2pgm is not installed")
@pytest.mark.parametrize(
    "case",
    ["dx-mono2", "dx-mono1", "ct-rescale", "dx-no-window"],
)
def test_grey_scale_matches_dcmtk_pixel_for_pixel(case, tmp_path: Path):
    lesion = synthetic.Lesion((120.0, 100.0), (14.0, 10.0))
    if case.startswith("ct"):
        images, _ = synthetic.ct_series(lesion=synthetic.Lesion((40.0, 70.0), (9.0, 7.0)))
        image = images[1]
        analysis = synthetic.head_ct_analysis(images, synthetic.Lesion((40.0, 70.0), (9.0, 7.0)))
        sources = images
    else:
        image, _ = synthetic.chest_radiograph(
            lesion=lesion, photometric="MONOCHROME1" if case == "dx-mono1" else "MONOCHROME2"
        )
        if case == "dx-no-window":
            del image.WindowCenter, image.WindowWidth
        analysis = synthetic.chest_analysis(image, lesion)
        sources = [image]
    (state,) = build_presentation_states(analysis, sources, profile=PROFILE, now=NOW)
    image_path, state_path, out_path = tmp_path / "i.dcm", tmp_path / "p.dcm", tmp_path / "o.pgm"
    image_path.write_bytes(encode_dataset(image))
    state_path.write_bytes(encode_dataset(state))
    subprocess.run(
        [DCMP2PGM, "-p", str(state_path), str(image_path), str(out_path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    reference = np.asarray(Image.open(out_path))
    ours = render(decode_dataset(image_path.read_bytes()), decode_dataset(state_path.read_bytes()))
    assert reference.shape == ours.gray.shape
    assert np.array_equal(reference, ours.gray)


def test_linear_window_follows_the_standard_formula():
    values = np.array([0.0, 99.5, 100.0, 149.5, 150.0, 199.5, 200.0, 300.0])
    out = window_to_8bit(values, center=150.0, width=101.0)
    # PS3.3 C.11.2.1.2.1: below c - 0.5 - (w-1)/2 = 99.5 -> 0; above c - 0.5 + (w-1)/2 = 199.5 -> 255.
    assert out[0] == 0 and out[1] == 0
    assert out[-1] == 255 and out[-2] == 255 and out[-3] == 255
    assert out[3] == 127  # ((149.5 - 149.5) / 100 + 0.5) * 255 = 127.5, truncated
    assert np.all(np.diff(out.astype(int)) >= 0)
    sigmoid = window_to_8bit(np.array([150.0]), 150.0, 100.0, "SIGMOID")
    assert sigmoid[0] == 127


def test_text_layer_is_drawn_but_holds_no_graphics(chest):
    image, _, _, analysis = chest
    _, _, rendering = render_overlay(image, analysis)
    assert TEXT_LAYER not in rendering.layers or not rendering.layers[TEXT_LAYER].any()
    gray_picture = np.repeat(rendering.gray[..., None], 3, axis=2)
    changed = np.any(rendering.rgb != gray_picture, axis=2)
    contours = rendering.layers[contour_layer_name(0)] | rendering.layers[contour_layer_name(1)]
    assert (changed & ~contours).sum() > 50  # the text and its anchor line
