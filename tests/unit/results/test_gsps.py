"""GSPS: contours from heatmaps, exact image and frame references, VOI, layers, one per series."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from skimage.measure import points_in_poly

from integrations.dicom.gsps import (
    TEXT_LAYER,
    build_presentation_states,
    contour_layer_name,
    heatmap_contours,
)
from integrations.dicom.result_common import decode_dataset, encode_dataset
from integrations.dicom.sr import tracking_uid
from integrations.settings import ResultsSettings
from models.results import AnalysisResult, Finding, Heatmap, UrgencyTier
from tests.dciodvfy import (
    RESULT_OBJECT_WARNINGS,
    assert_conformant,
)
from tests.unit.results import synthetic

NOW = synthetic.FIXED_NOW


def test_contours_are_closed_nested_and_inside_the_image():
    values = synthetic.gaussian_heatmap((60, 90), (20.0, 30.0), (6.0, 9.0))
    outer, inner = heatmap_contours(values, [0.5, 0.8])
    assert len(outer) == 1 and len(inner) == 1
    for polygon in (outer[0], inner[0]):
        assert np.allclose(polygon[0], polygon[-1])
        assert polygon[:, 0].min() >= 0 and polygon[:, 0].max() <= 90
        assert polygon[:, 1].min() >= 0 and polygon[:, 1].max() <= 60
    # (column, row) order: the peak at row 20, column 30 is at x = 30.5, y = 20.5.
    assert points_in_poly([[30.5, 20.5]], inner[0])[0]
    assert not points_in_poly([[20.5, 30.5]], inner[0])[0]
    assert points_in_poly(inner[0][:-1], outer[0]).all()


def test_contour_at_half_peak_passes_where_the_map_is_half():
    values = synthetic.gaussian_heatmap((80, 80), (40.0, 40.0), (8.0, 8.0))
    (polygon,) = heatmap_contours(values, [0.5])[0]
    centre = np.array([40.5, 40.5])
    radii = np.linalg.norm(polygon - centre, axis=1)
    expected = 8.0 * np.sqrt(2 * np.log(2))  # where exp(-r^2 / 2 sigma^2) = 0.5
    assert radii == pytest.approx(expected, abs=0.6)


def test_contours_of_a_map_touching_the_border_are_closed():
    values = synthetic.gaussian_heatmap((40, 40), (0.0, 20.0), (5.0, 5.0))
    (polygon,) = heatmap_contours(values, [0.3])[0]
    assert np.allclose(polygon[0], polygon[-1])
    assert polygon[:, 1].min() == 0.0


def test_no_contours_for_an_empty_map_and_bad_levels_are_refused():
    assert heatmap_contours(np.zeros((10, 10)), [0.5, 0.8]) == [[], []]
    with pytest.raises(ValueError, match="levels"):
        heatmap_contours(np.ones((10, 10)), [1.5])
    with pytest.raises(ValueError, match="2D"):
        heatmap_contours(np.ones((2, 10, 10)), [0.5])


def test_gsps_references_the_exact_image_with_contours_text_and_source_window(chest, profile):
    image, _, _, analysis = chest
    (state,) = build_presentation_states(analysis, [image], profile=profile, now=NOW)
    state = decode_dataset(encode_dataset(state))
    assert state.ReferencedSeriesSequence[0].SeriesInstanceUID == image.SeriesInstanceUID
    referenced = state.ReferencedSeriesSequence[0].ReferencedImageSequence
    assert [item.ReferencedSOPInstanceUID for item in referenced] == [image.SOPInstanceUID]
    layers = [item.GraphicLayer for item in state.GraphicLayerSequence]
    assert layers == [contour_layer_name(0), contour_layer_name(1), TEXT_LAYER]
    by_layer = {item.GraphicLayer: item for item in state.GraphicAnnotationSequence}
    for level in range(2):
        annotation = by_layer[contour_layer_name(level)]
        assert (
            annotation.ReferencedImageSequence[0].ReferencedSOPInstanceUID == image.SOPInstanceUID
        )
        graphic = annotation.GraphicObjectSequence[0]
        assert graphic.GraphicType == "POLYLINE"
        assert graphic.GraphicAnnotationUnits == "PIXEL"
        assert graphic.TrackingUID == tracking_uid(analysis, analysis.findings[0], image)
    text = by_layer[TEXT_LAYER].TextObjectSequence[0]
    assert text.UnformattedTextValue == "Pneumothorax 91% (AI)"
    voi = state.SoftcopyVOILUTSequence[0]
    assert (float(voi.WindowCenter), float(voi.WindowWidth)) == (1800.0, 2400.0)
    assert state.PresentationLUTShape == "IDENTITY"
    assert state.Modality == "PR"
    assert state.PatientName == image.PatientName
    assert "Laterality" not in state  # chest: unpaired and known


def test_gsps_inverts_monochrome1_and_derives_a_window_when_the_image_has_none(profile):
    lesion = synthetic.Lesion((100.0, 150.0), (10.0, 10.0))
    image, _ = synthetic.chest_radiograph(lesion=lesion, photometric="MONOCHROME1")
    del image.WindowCenter, image.WindowWidth
    (state,) = build_presentation_states(
        synthetic.chest_analysis(image, lesion), [image], profile=profile, now=NOW
    )
    assert state.PresentationLUTShape == "INVERSE"
    values = np.frombuffer(image.PixelData, dtype=np.uint16)
    voi = state.SoftcopyVOILUTSequence[0]
    low = float(voi.WindowCenter) - float(voi.WindowWidth) / 2
    high = float(voi.WindowCenter) + float(voi.WindowWidth) / 2
    assert low <= values.min() and high >= values.max()


def test_one_gsps_per_series_and_the_exact_frame_of_a_multiframe_image(profile):
    images, _ = synthetic.ct_series()
    lesion = synthetic.Lesion((40.0, 70.0), (9.0, 7.0))
    analysis = synthetic.head_ct_analysis(images, lesion)
    other_series = copy.deepcopy(images[1])
    other_series.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    other_series.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ref = synthetic.reference(other_series)
    analysis = dataclasses.replace(
        analysis,
        findings=(
            dataclasses.replace(analysis.findings[0], images=(*analysis.findings[0].images, ref)),
        ),
        heatmaps=(*analysis.heatmaps, Heatmap("hemorrhage", ref, analysis.heatmaps[0].values)),
    )
    states = build_presentation_states(analysis, [*images, other_series], profile=profile, now=NOW)
    assert len(states) == 2
    assert len({state.SOPInstanceUID for state in states}) == 2
    assert len({state.SeriesInstanceUID for state in states}) == 1
    assert [s.ReferencedSeriesSequence[0].SeriesInstanceUID for s in states] == [
        images[0].SeriesInstanceUID,
        other_series.SeriesInstanceUID,
    ]

    frame_image, _ = synthetic.multiframe_image(lesion_frame=3)
    frame_ref = synthetic.reference(frame_image, 3)
    heatmap = synthetic.gaussian_heatmap((64, 80), (30.0, 50.0), (7.0, 9.0))
    multiframe = AnalysisResult(
        analyzer="cine",
        model=synthetic.MODEL,
        status="analysed",
        findings=(
            Finding("nodule", synthetic.NODULE, 0.8, 0.5, True, UrgencyTier.URGENT, (frame_ref,)),
        ),
        heatmaps=(Heatmap("nodule", frame_ref, heatmap),),
        analysed_images=(frame_ref,),
    )
    (state,) = build_presentation_states(multiframe, [frame_image], profile=profile, now=NOW)
    for annotation in state.GraphicAnnotationSequence:
        assert int(annotation.ReferencedImageSequence[0].ReferencedFrameNumber) == 3
    assert_conformant(
        encode_dataset(state), allowed_warnings=(*RESULT_OBJECT_WARNINGS, "Laterality")
    )


def test_contour_levels_come_from_the_profile(chest):
    image, _, _, analysis = chest
    three = ResultsSettings(contour_levels=[0.3, 0.6, 0.9])
    (state,) = build_presentation_states(analysis, [image], profile=three, now=NOW)
    contour_layers = [
        item.GraphicLayer
        for item in state.GraphicAnnotationSequence
        if item.GraphicLayer.startswith("AI_CONTOUR")
    ]
    assert contour_layers == [contour_layer_name(index) for index in range(3)]


@pytest.mark.parametrize("scenario", ["chest", "head_ct"])
def test_gsps_passes_dciodvfy(scenario, request, profile):
    sources, _, _, analysis = request.getfixturevalue(scenario)
    sources = sources if isinstance(sources, list) else [sources]
    states = build_presentation_states(analysis, sources, profile=profile, now=NOW)
    assert states
    for state in states:
        result = assert_conformant(encode_dataset(state), allowed_warnings=RESULT_OBJECT_WARNINGS)
        assert result.iod == "GrayscaleSoftcopyPresentationState"


def test_heatmaps_must_match_their_image_and_a_finding(chest, profile):
    image, _, _, analysis = chest
    wrong_shape = dataclasses.replace(
        analysis,
        heatmaps=(dataclasses.replace(analysis.heatmaps[0], values=np.zeros((10, 10))),),
    )
    with pytest.raises(ValueError, match=r"analysis.heatmaps\[0\] has shape"):
        build_presentation_states(wrong_shape, [image], profile=profile)
    out_of_range = dataclasses.replace(
        analysis,
        heatmaps=(
            dataclasses.replace(analysis.heatmaps[0], values=analysis.heatmaps[0].values * 3),
        ),
    )
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        build_presentation_states(out_of_range, [image], profile=profile)
    unknown_label = dataclasses.replace(
        analysis, heatmaps=(dataclasses.replace(analysis.heatmaps[0], label="fracture"),)
    )
    with pytest.raises(ValueError, match="no finding"):
        build_presentation_states(unknown_label, [image], profile=profile)
