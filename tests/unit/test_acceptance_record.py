"""The acceptance record's verdict, signature and ground truth (pure parts)."""

from __future__ import annotations

import copy

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from integrations.acceptance.geometry import HotSpot, ImagePlane, on_region
from integrations.acceptance.record import (
    CaseResult,
    StepResult,
    finish_record,
    sign_record,
    verify_document,
)
from integrations.acceptance.truth import (
    RegionBox,
    cases_from_truth,
    generated_cases,
    read_truth_csv,
    with_fresh_uids,
    write_truth_csv,
)


def _case(name: str, tier: str, failing: tuple[str, ...] = ()) -> CaseResult:
    steps = ["arrival", "analysis", "sr_in_pacs", "overlay_on_region", "worklist_tier"]
    steps += ["escalation", "roles"]
    return CaseResult(
        case=name,
        description="",
        modality="DX",
        expected_tier=tier,
        expected_findings=[],
        steps=[StepResult(step, step not in failing) for step in steps],
    )


def _record(*cases: CaseResult) -> dict:
    return finish_record(
        run_id="r1",
        started_at="t0",
        finished_at="t1",
        site={"settings_digest": "0" * 64},
        versions={"pacsflow": "0.1.0", "models": {}},
        cases=list(cases),
        source="generated",
    )


def test_any_failed_step_of_a_critical_case_blocks_go_live():
    record = _record(_case("A01", "Critical", ("overlay_on_region",)), _case("A03", "Urgent"))
    assert record["go_live"] == "BLOCKED"
    assert record["failed_steps"] == ["A01/overlay_on_region"]
    assert record["cases"][0]["steps"][3]["critical"] is True
    assert record["cases"][1]["steps"][3]["critical"] is False


def test_a_non_critical_failure_fails_without_blocking_but_roles_and_escalation_block():
    assert _record(_case("A03", "Urgent", ("sr_in_pacs",)))["go_live"] == "FAILED"
    assert _record(_case("A07", "Routine", ("escalation",)))["go_live"] == "BLOCKED"
    assert _record(_case("A07", "Routine", ("roles",)))["go_live"] == "BLOCKED"
    assert _record(_case("A07", "Routine"))["go_live"] == "PASSED"


def test_the_signature_covers_every_field_and_only_the_sites_key_verifies():
    key = Ed25519PrivateKey.generate()
    document = sign_record(_record(_case("A01", "Critical")), key)
    assert verify_document(document, key.public_key()).intact
    assert verify_document(copy.deepcopy(document), None).intact  # the key it carries
    for change in (
        lambda record: record["cases"][0]["steps"][0].update(passed=False),
        lambda record: record.update(go_live="PASSED "),
        lambda record: record["site"].update(settings_digest="1" * 64),
    ):
        tampered = copy.deepcopy(document)
        change(tampered["record"])
        assert not verify_document(tampered, key.public_key()).intact
    # re-signed by someone else: intact by its own key, refused by the site's
    forged = sign_record(document["record"], Ed25519PrivateKey.generate())
    assert verify_document(forged, None).intact
    assert not verify_document(forged, key.public_key()).intact
    assert not verify_document({"record": {}}, key.public_key()).intact


def test_truth_csv_round_trips_and_joins_the_studies_under_fresh_uids():
    cases = generated_cases(["A01", "A07"])
    rows = read_truth_csv(write_truth_csv(cases))
    assert [(r.case, r.expected_tier.value, r.findings) for r in rows] == [
        ("A01", "Critical", ("Pneumothorax", "Tension Pneumothorax")),
        ("A07", "Routine", ()),
    ]
    assert rows[0].region == cases[0].region and rows[0].region
    joined = cases_from_truth(rows, [ds for case in cases for ds in case.datasets])
    assert [case.case for case in joined] == ["A01", "A07"]
    fresh = with_fresh_uids(joined[0], "run-2")
    assert fresh.study_instance_uid != joined[0].study_instance_uid
    new_uids = {str(ds.SOPInstanceUID) for ds in fresh.datasets}
    assert {box.sop_instance_uid for box in fresh.region} <= new_uids
    assert (
        fresh.datasets[0].file_meta.MediaStorageSOPInstanceUID == fresh.datasets[0].SOPInstanceUID
    )
    assert fresh.datasets[0].PixelData == joined[0].datasets[0].PixelData
    assert with_fresh_uids(joined[0], "run-2").study_instance_uid == fresh.study_instance_uid


@pytest.mark.parametrize(
    "line",
    [
        "A01,1.2.3,Critical,,1.2.3.4:5,5,1,1,x",  # minimum above maximum
        "A01,1.2.3,Critical,,1.2.3.4:1,2,3,x",  # four integers
        "A01,1.2.3,Stat,,,x",  # not a tier
    ],
)
def test_a_malformed_truth_line_is_refused_with_its_line_number(line):
    with pytest.raises(ValueError, match="line 2"):
        read_truth_csv("case,study_instance_uid,expected_tier,findings,region,description\n" + line)


def test_a_hot_spot_is_on_the_region_in_plane_with_margin_and_a_slice_away():
    region = (RegionBox("img-2", None, 40, 40, 60, 60),)
    planes = {uid: ImagePlane(100, 100, z) for uid, z in (("img-1", 0.0), ("img-2", 5.0))}
    planes["img-far"] = ImagePlane(100, 100, 30.0)

    def spot(uid: str, row: float, column: float) -> HotSpot:
        return HotSpot("gsps", "Mass", uid, None, row, column)

    def lies(s: HotSpot) -> bool:
        return on_region(s, region, planes, margin=0.05, through_plane_mm=10)

    assert lies(spot("img-2", 50, 50))
    assert lies(spot("img-2", 64, 50))  # within 5 % of 100 rows
    assert not lies(spot("img-2", 70, 50))
    assert lies(spot("img-1", 50, 50))  # 5 mm from the boxed slice
    assert not lies(spot("img-far", 50, 50))
    assert not lies(spot("img-1", 10, 10))


def test_the_suite_may_not_call_the_pacs_as_the_node():
    from integrations.errors import ConfigError
    from integrations.settings import load_settings

    with pytest.raises(ConfigError, match="calling_ae_title must differ"):
        load_settings(None, search=False, acceptance={"calling_ae_title": "PACSFLOW"})
    assert load_settings(None, search=False).acceptance.calling_ae_title == "PACSFLOW-ACCEPT"


def test_monitoring_reads_the_escalation_baseline_from_the_signed_record(tmp_path):
    import json

    from integrations.monitoring.baseline import acceptance_baseline

    critical = _case("A01", "Critical")
    critical.found_tier = "Critical"
    routine = _case("A07", "Routine")
    routine.found_tier = "Routine"
    record = _record(critical, routine)
    assert record["escalation_baseline"] == {"DX": {"studies": 2, "escalated": 1}}
    path = tmp_path / "acceptance.json"
    path.write_text(json.dumps(sign_record(record, Ed25519PrivateKey.generate())))
    assert acceptance_baseline(path) == {"DX": 0.5}
