from datetime import UTC, datetime, timedelta

import pytest

from integrations.dicom.assembly import (
    CloseReason,
    CompletionPolicy,
    StudyActivity,
    close_reason,
    close_time,
)
from integrations.dicom.routing import Route, Rule, SeriesInfo, route_study

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
POLICY = CompletionPolicy(quiet_seconds=5, max_open_seconds=60)


def activity(first_offset: float, last_offset: float) -> StudyActivity:
    return StudyActivity(
        "1.2.3", 1, T0 + timedelta(seconds=first_offset), T0 + timedelta(seconds=last_offset)
    )


def test_study_closes_only_after_the_quiet_period():
    study = activity(0, 10)
    assert close_reason(study, POLICY, T0 + timedelta(seconds=14.9)) is None
    assert close_reason(study, POLICY, T0 + timedelta(seconds=15)) is CloseReason.QUIET
    assert close_time(study, POLICY) == T0 + timedelta(seconds=15)


def test_hard_ceiling_closes_a_study_that_keeps_receiving():
    study = activity(0, 59)
    assert close_reason(study, POLICY, T0 + timedelta(seconds=60)) is CloseReason.CEILING
    assert close_time(study, POLICY) == T0 + timedelta(seconds=60)


def test_policy_validation():
    with pytest.raises(ValueError):
        CompletionPolicy(quiet_seconds=0, max_open_seconds=10)
    with pytest.raises(ValueError):
        CompletionPolicy(quiet_seconds=10, max_open_seconds=5)


CHEST = SeriesInfo("1.1", modality="DX", body_part_examined="CHEST", series_description="PA chest")
LATERAL = SeriesInfo("1.2", modality="DX", body_part_examined="CHEST", series_description="LAT")
HEAD_CT = SeriesInfo(
    "2.1", modality="CT", body_part_examined="HEAD", protocol_name="Head non-contrast"
)
RULES = (
    Rule("chest", ("chest-xray",), modality=("CR", "DX"), body_part=("chest",)),
    Rule("head-ct", ("head-ct-ich",), modality=("CT",), protocol=r"(?i)head|brain"),
)


def test_routing_unions_series_per_analyzer():
    route = route_study([CHEST, LATERAL, HEAD_CT], RULES)
    assert route.analyzers == {"chest-xray": ("1.1", "1.2"), "head-ct-ich": ("2.1",)}
    assert route.rules == ("chest", "head-ct")
    assert Route.from_json(route.to_json()) == route


def test_unrouted_study_says_why():
    route = route_study([SeriesInfo("3.1", modality="MG", body_part_examined="BREAST")], RULES)
    assert not route.is_routed
    assert "modality MG not in ['CR', 'DX']" in route.unrouted_reason
    assert route_study([], RULES).unrouted_reason == "study has no series"
    assert route_study([CHEST], ()).unrouted_reason == "no routing rules are configured"


def test_protocol_rule_searches_protocol_and_description():
    rule = Rule("r", ("a",), protocol="(?i)head")
    assert rule.mismatch(HEAD_CT) is None
    assert rule.mismatch(SeriesInfo("4", series_description="HEAD W/O")) is None
    assert rule.mismatch(SeriesInfo("5", series_description="abdomen")) is not None
