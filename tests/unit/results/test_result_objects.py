"""The entry point: carriers from the profile, deterministic UIDs, every kind valid and round-tripped."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from integrations.dicom.result_common import ResultKind, decode_dataset, encode_dataset
from integrations.dicom.result_objects import build_result_objects
from integrations.dicom.sr_reader import read_measurement_report
from integrations.errors import ConfigError
from integrations.settings import ResultsSettings, load_settings
from tests.dciodvfy import (
    PARAMETRIC_MAP_WARNINGS,
    RESULT_OBJECT_WARNINGS,
    assert_conformant,
)
from tests.unit.results import synthetic
from tests.unit.results.conftest import ALL_CARRIERS

NOW = synthetic.FIXED_NOW


def kinds(result_set) -> list[str]:
    return [item.kind.value for item in result_set]


def test_the_profile_chooses_the_carriers_and_the_sr_comes_first(chest):
    image, _, _, analysis = chest
    only_sr = build_result_objects(analysis, [image], profile=ResultsSettings(carriers=["sr"]))
    assert kinds(only_sr) == ["sr"]
    seg_first = build_result_objects(
        analysis, [image], profile=ResultsSettings(carriers=["segmentation", "sr", "gsps"])
    )
    assert kinds(seg_first) == ["sr", "segmentation", "gsps"]
    default = build_result_objects(analysis, [image], profile=ResultsSettings())
    assert kinds(default) == ["sr", "gsps", "secondary_capture"]


def test_every_carrier_for_a_ct_passes_dciodvfy_and_round_trips(head_ct, profile):
    images, _, _, analysis = head_ct
    result_set = build_result_objects(analysis, images, profile=profile, now=NOW)
    assert result_set.skipped == ()
    assert set(kinds(result_set)) == set(ALL_CARRIERS)
    for item in result_set:
        data = item.to_bytes()
        assert_conformant(data, allowed_warnings=PARAMETRIC_MAP_WARNINGS)
        again = decode_dataset(data)
        assert again.SOPInstanceUID == item.sop_instance_uid
        assert again.SOPClassUID == item.sop_class_uid
        assert again.StudyInstanceUID == images[0].StudyInstanceUID
        assert again.PatientID == images[0].PatientID
        # Nothing lost or changed on the way through bytes: re-encoding gives the same bytes.
        assert encode_dataset(again) == data, item.kind


def test_a_projection_image_gets_every_carrier_it_can_and_says_why_not_the_others(chest, profile):
    image, _, _, analysis = chest
    result_set = build_result_objects(analysis, [image], profile=profile, now=NOW)
    assert kinds(result_set) == ["sr", "gsps", "secondary_capture", "segmentation"]
    assert [item.kind for item in result_set.skipped] == [ResultKind.PARAMETRIC_MAP]
    for item in result_set:
        assert_conformant(item.to_bytes(), allowed_warnings=RESULT_OBJECT_WARNINGS)


def test_without_heatmaps_only_the_sr_is_built(profile):
    image, _ = synthetic.chest_radiograph()
    lesion = synthetic.Lesion((205.0, 78.0), (16.0, 12.0))
    negative = synthetic.chest_analysis(image, lesion, probability=0.1, present=False)
    result_set = build_result_objects(negative, [image], profile=profile, now=NOW)
    assert kinds(result_set) == ["sr"]
    assert {item.kind.value for item in result_set.skipped} == set(ALL_CARRIERS) - {"sr"}
    not_analysable = build_result_objects(
        synthetic.not_analysable(image), [image], profile=profile, now=NOW
    )
    assert kinds(not_analysable) == ["sr"]


def test_reruns_give_the_same_uids_and_a_late_image_new_instances_in_the_same_series(
    head_ct, profile
):
    images, _, _, analysis = head_ct
    late_image = synthetic.ct_series(slices=len(images) + 1)[0][-1]
    first = build_result_objects(analysis, images, profile=profile, generation=1, now=NOW)
    rerun = build_result_objects(analysis, images, profile=profile, generation=1)
    second = build_result_objects(
        analysis, [*images, late_image], profile=profile, generation=2, now=NOW
    )

    def uids(result_set):
        return [(item.kind, item.series_instance_uid, item.sop_instance_uid) for item in result_set]

    assert uids(first) == uids(rerun)
    first_uids = {item.sop_instance_uid for item in first}
    assert len(first_uids) == len(first)  # every object has its own instance UID
    assert first_uids.isdisjoint({item.sop_instance_uid for item in second})
    assert [item.series_instance_uid for item in first] == [
        item.series_instance_uid for item in second
    ]
    assert len({item.series_instance_uid for item in first}) == len(set(kinds(first)))
    assert all(
        int(b.dataset.InstanceNumber) > int(a.dataset.InstanceNumber)
        for a, b in zip(first, second, strict=True)
    )
    # A different analyzer on the same study gets its own series.
    other = build_result_objects(
        synthetic.head_ct_analysis(
            images, synthetic.Lesion((40.0, 70.0), (9.0, 7.0)), model=synthetic.MODEL
        ).__class__(**{**analysis.__dict__, "analyzer": "second-opinion"}),
        images,
        profile=profile,
        now=NOW,
    )
    assert {item.series_instance_uid for item in other}.isdisjoint(
        {item.series_instance_uid for item in first}
    )


def test_result_series_are_numbered_from_the_profile_base(head_ct):
    images, _, _, analysis = head_ct
    result_set = build_result_objects(
        analysis, images, profile=ResultsSettings(carriers=ALL_CARRIERS, series_number_base=700)
    )
    numbers = {item.kind: int(item.dataset.SeriesNumber) for item in result_set}
    assert numbers == {kind: 700 + kind.series_offset for kind in ResultKind}


def test_results_settings_are_validated():
    with pytest.raises(ValidationError, match="sr"):
        ResultsSettings(carriers=["gsps"])
    with pytest.raises(ValidationError, match="repeat"):
        ResultsSettings(carriers=["sr", "gsps", "gsps"])
    with pytest.raises(ValidationError):
        ResultsSettings(carriers=["sr", "hologram"])
    with pytest.raises(ValidationError, match="ascending"):
        ResultsSettings(contour_levels=[0.8, 0.5])
    with pytest.raises(ValidationError):
        ResultsSettings(contour_levels=[0.5, 1.2])
    assert set(ALL_CARRIERS) == {kind.value for kind in ResultKind}


def test_results_and_priors_sections_load_from_toml_and_environment(tmp_path, monkeypatch):
    config = tmp_path / "pacsflow.toml"
    config.write_text(
        '[results]\ncarriers = ["sr", "segmentation"]\nsecondary_capture_caption = "KI-Overlay"\n'
        "[priors]\nlookback_days = 365\n"
    )
    monkeypatch.setenv("PACSFLOW_PRIORS__SAME_BODY_PART", "false")
    settings = load_settings(config)
    assert settings.results.carriers == ["sr", "segmentation"]
    assert settings.results.secondary_capture_caption == "KI-Overlay"
    assert settings.priors.lookback_days == 365
    assert settings.priors.same_body_part is False
    config.write_text("[results]\ncarrier = []\n")
    with pytest.raises(ConfigError, match=r"results\.carrier"):
        load_settings(config)


def test_bad_arguments_are_named(chest, profile):
    image, _, _, analysis = chest
    with pytest.raises(ValueError, match="sources"):
        build_result_objects(analysis, [], profile=profile)
    with pytest.raises(TypeError, match="sources"):
        build_result_objects(analysis, [image.to_json_dict()], profile=profile)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="profile"):
        build_result_objects(analysis, [image], profile=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generation"):
        build_result_objects(analysis, [image], profile=profile, generation="2")  # type: ignore[arg-type]


def test_names_keep_their_characters_even_after_the_source_was_written_once(profile):
    """Found against Orthanc: pydicom reused a name's first (Latin-1) bytes in a UTF-8 object."""
    lesion = synthetic.Lesion((205.0, 78.0), (16.0, 12.0))
    image, _ = synthetic.chest_radiograph(lesion=lesion, patient_name="Müller^Jürgen")
    encode_dataset(image)  # as when the source was uploaded or spooled before the build
    result_set = build_result_objects(
        synthetic.chest_analysis(image, lesion), [image], profile=profile
    )
    for item in result_set:
        data = item.to_bytes()
        assert str(decode_dataset(data).PatientName) == "Müller^Jürgen", item.kind
        expected = "Müller".encode(
            "utf-8" if item.dataset.SpecificCharacterSet == "ISO_IR 192" else "latin-1"
        )
        assert expected in data, item.kind
    assert {item.dataset.SpecificCharacterSet for item in result_set} == {
        "ISO_IR 100",
        "ISO_IR 192",
    }


def test_the_flow_can_pass_its_settings_and_its_prior_reference(chest, flow_settings):
    """The build_results task passes the whole Settings and a PriorRef (tasks.context)."""
    from tasks.context import PriorRef

    image, _, _, analysis = chest
    settings = flow_settings
    found = PriorRef(
        True, study_instance_uid="1.2.3.9", study_date="20240601", accession_number="ACC9"
    )
    result_set = build_result_objects(analysis, [image], settings=settings, prior=found)
    assert kinds(result_set) == list(settings.results.carriers)
    report = read_measurement_report(result_set.sr.dataset)
    assert report.prior_summary == (
        "Prior study 2024-06-01 (ACC9): no earlier AI measurements to compare"
    )
    missing = PriorRef(False, "no prior available: PACS did not answer C-FIND (timeout)")
    report = read_measurement_report(
        build_result_objects(analysis, [image], settings=settings, prior=missing).sr.dataset
    )
    assert report.prior_summary == missing.reason
    with pytest.raises(TypeError, match="exactly one"):
        build_result_objects(analysis, [image], settings=settings, profile=settings.results)
    with pytest.raises(TypeError, match="exactly one"):
        build_result_objects(analysis, [image])
    with pytest.raises(TypeError, match="prior"):
        build_result_objects(analysis, [image], settings=settings, prior="ACC9")  # type: ignore[arg-type]


@pytest.fixture
def flow_settings():
    return load_settings(None, search=False, results={"carriers": ["sr", "gsps"]})
