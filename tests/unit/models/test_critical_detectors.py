"""Stroke and dissection pieces without a network: diffusion series selection by b-value and
Image Type, the aortic diameter and infarct measurements, ASPECTS-style sides, body part and
escalation routes."""

from __future__ import annotations

import numpy as np
import pytest

from integrations.dicom.body_part import resolve_body_part
from integrations.escalation.rules import route_finding
from integrations.settings import EscalationSettings
from models.analyzers.aortic_dissection import max_aortic_diameter_mm
from models.analyzers.brain_mri_stroke import infarct_masks
from models.analyzers.diffusion import b_value, is_adc_map, select_diffusion
from models.analyzers.head_ct_stroke import cavity_masks
from models.analyzers.stroke import aspects, keep_groups, volume_ml
from models.analyzers.volume import prepare_series
from models.demo.head_ct_ich import INPUT as HEAD_CT_INPUT
from models.package import InputSpec
from models.phantoms.aorta import cta_aorta_study
from models.phantoms.stroke import brain_mri_stroke_study, head_ct_stroke_study


@pytest.mark.parametrize("where", ["standard", "sequence", "siemens", "ge"])
def test_diffusion_images_are_chosen_by_b_value_not_description(where: str) -> None:
    study = brain_mri_stroke_study(11, True, slices=10, b_value_tag=where)
    assert {str(ds.SeriesDescription) for ds in study.datasets} == {"SEQ 5", "SEQ 6"}
    selection = select_diffusion(study.datasets)
    assert selection.dwi_b_value == 1000.0
    assert selection.dwi is not None and len(selection.dwi) == 10
    assert {b_value(ds) for ds in selection.dwi} == {1000.0}
    assert selection.adc is not None and len(selection.adc) == 10
    assert all(is_adc_map(ds) for ds in selection.adc)
    # the b=0 images of the same series are not the diffusion-weighted image
    b0 = [ds for ds in study.datasets if b_value(ds) == 0.0]
    assert len(b0) == 10 and not set(map(id, b0)) & set(map(id, selection.dwi))


def test_no_adc_map_or_no_b_value_is_found_missing() -> None:
    study = brain_mri_stroke_study(12, True, slices=10, adc=False)
    assert select_diffusion(study.datasets).adc is None
    for ds in study.datasets:
        del ds.DiffusionBValue
    assert select_diffusion(study.datasets).dwi is None


def test_aortic_diameter_within_a_pixel_and_a_half() -> None:
    for seed in range(4):
        for stanford in ("A", "B", None):
            study = cta_aorta_study(seed, stanford)
            hounsfield = np.stack([ds.pixel_array.astype(float) - 1024 for ds in study.datasets])
            spacing = float(study.datasets[0].PixelSpacing[0])
            measured = max_aortic_diameter_mm(hounsfield, (spacing, spacing))
            truth = study.measurements["max_aortic_diameter_mm"]
            assert abs(measured - truth) <= 1.5 * spacing, (seed, stanford, measured, truth)


def test_head_ct_infarct_volume_and_side() -> None:
    study = head_ct_stroke_study(21, True, matrix=128)
    spec = InputSpec.model_validate(HEAD_CT_INPUT)
    series = prepare_series(study.datasets, spec, keep_hounsfield=True)
    assert series.hounsfield is not None
    brain, hypodense = cavity_masks(series.hounsfield)
    truth = np.stack(
        [
            study.mask("Acute ischemic stroke", frame.reference.sop_instance_uid)
            if study.mask("Acute ischemic stroke", frame.reference.sop_instance_uid) is not None
            else np.zeros(brain.shape[1:], dtype=bool)
            for frame in series.frames
        ]
    )
    on_truth_slices = truth.any(axis=(1, 2))[:, None, None]
    infarct = keep_groups(hypodense & on_truth_slices, 30)
    pixel = float(study.datasets[0].PixelSpacing[0])
    measured = volume_ml(infarct, (pixel, pixel), series.stack.spacing)
    assert measured == pytest.approx(study.measurements["infarct_volume_ml"], rel=0.25)
    regional = aspects(series, brain, infarct)
    side = "left" if study.measurements["side"] > 0 else "right"
    other = "right" if side == "left" else "left"
    assert regional.scores[side] < 10 and regional.affected[side]
    assert regional.scores[other] == 10 and regional.worst_side == side


def test_mr_restricted_diffusion_volume() -> None:
    study = brain_mri_stroke_study(22, True)
    selection = select_diffusion(study.datasets)
    assert selection.dwi is not None and selection.adc is not None
    dwi = np.stack([ds.pixel_array.astype(float) for ds in selection.dwi])
    adc = np.stack([ds.pixel_array.astype(float) for ds in selection.adc])
    _, restricted = infarct_masks(dwi, adc)
    pixel = float(study.datasets[0].PixelSpacing[0])
    measured = volume_ml(keep_groups(restricted, 8), (pixel, pixel), 5.0)
    assert measured == pytest.approx(study.measurements["infarct_volume_ml"], rel=0.15)
    normal = brain_mri_stroke_study(23, False)
    selection = select_diffusion(normal.datasets)
    assert selection.dwi is not None and selection.adc is not None
    dwi = np.stack([ds.pixel_array.astype(float) for ds in selection.dwi])
    adc = np.stack([ds.pixel_array.astype(float) for ds in selection.adc])
    assert volume_ml(keep_groups(infarct_masks(dwi, adc)[1], 8), (pixel, pixel), 5.0) < 1.0


def test_aorta_keywords_resolve_a_body_part() -> None:
    assert resolve_body_part(series_description="CTA AORTA ARTERIAL").body_part == "AORTA"
    assert resolve_body_part(body_part_examined="AORTA").body_part == "AORTA"
    assert resolve_body_part(series_description="Angio-CT Aortendissektion").body_part == "AORTA"


def test_stroke_and_dissection_take_their_default_routes() -> None:
    settings = EscalationSettings.model_validate(
        {
            "people": {"a": {"name": "A", "email": "a@x.invalid"}},
            "teams": {
                name: {"on_call": [{"person": "a"}]}
                for name in ("stroke", "surgery", "neurosurgery", "radiology")
            },
            "default_team": "radiology",
        }
    )
    expected = {
        ("Acute ischemic stroke", "99PACSFLOW:ACUTE-ISCHEMIC-STROKE"): "stroke",
        ("Hyperdense middle cerebral artery sign", "99PACSFLOW:HYPERDENSE-MCA-SIGN"): "stroke",
        ("Aortic dissection", "SCT:308546005"): "surgery",
        ("Stanford type A aortic dissection", "99PACSFLOW:STANFORD-TYPE-A-DISSECTION"): "surgery",
        ("Stanford type B aortic dissection", "99PACSFLOW:STANFORD-TYPE-B-DISSECTION"): "surgery",
        ("Intracranial hemorrhage", "SCT:1386000"): "neurosurgery",
    }
    for (label, code), team in expected.items():
        route = route_finding(settings, label, code)
        assert route is not None and route.team == team, (label, route)


def test_infarct_volume_aspects_and_diameter_change_against_the_prior() -> None:
    import datetime

    from models.codes import (
        AORTIC_DISSECTION,
        ASPECTS,
        DIAMETER,
        ISCHEMIC_STROKE,
        MILLILITER,
        MILLIMETER,
        SCORE,
        VOLUME,
    )
    from models.interval_change import PriorStudy, compare_with_prior
    from models.results import AnalysisResult, Finding, Measurement, ModelIdentity, UrgencyTier

    def result(volume: float, score: float, diameter: float) -> AnalysisResult:
        findings = (
            Finding(
                "Acute ischemic stroke",
                ISCHEMIC_STROKE,
                0.9,
                0.3,
                True,
                UrgencyTier.CRITICAL,
                measurements=(
                    Measurement(VOLUME, volume, MILLILITER),
                    Measurement(ASPECTS, score, SCORE),
                ),
            ),
            Finding(
                "Aortic dissection",
                AORTIC_DISSECTION,
                0.1,
                0.5,
                False,
                UrgencyTier.CRITICAL,
                measurements=(Measurement(DIAMETER, diameter, MILLIMETER),),
            ),
        )
        model = ModelIdentity("m", "1", "pacsflow", "0" * 64, clinical_use=False)
        return AnalysisResult("head-ct-stroke", model, "analysed", findings)

    prior = PriorStudy("1.2.3", datetime.date(2026, 11, 1), "ACC", result(20.0, 8.0, 40.0).findings)
    comparison = compare_with_prior(result(35.0, 6.0, 43.5), prior)
    changes = {change.quantity.meaning: change for change in comparison.changes}
    assert changes["Volume"].absolute_change == pytest.approx(15.0)
    assert changes[ASPECTS.meaning].absolute_change == pytest.approx(-2.0)
    assert changes["Diameter"].absolute_change == pytest.approx(3.5)
