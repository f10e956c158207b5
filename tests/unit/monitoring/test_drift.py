"""Escalation-rate drift levels and the acceptance baseline (pure)."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from integrations.errors import ConfigError
from integrations.monitoring.baseline import acceptance_baseline, baseline_from_record
from integrations.monitoring.report import DayRate, divergence, drift
from integrations.settings import MonitoringSettings

SETTINGS = MonitoringSettings(min_studies_per_day=20)
LAST_DAY = date(2026, 12, 1)


def days(*rates: tuple[int, int]) -> list[DayRate]:
    """Daily (studies, escalated), oldest first, ending on LAST_DAY."""
    first = LAST_DAY - timedelta(days=len(rates) - 1)
    return [DayRate(first + timedelta(days=i), n, k) for i, (n, k) in enumerate(rates)]


def judged(series: list[DayRate], reference: float = 0.10, period_days: int = 1):
    recent = series[-period_days:]
    period = DayRate(LAST_DAY, sum(d.studies for d in recent), sum(d.escalated for d in recent))
    return drift("CT", "historical", reference, period, series, SETTINGS)


def test_divergence_is_relative_to_the_reference():
    assert divergence(0.125, 0.10) == pytest.approx(0.25)
    assert divergence(0.075, 0.10) == pytest.approx(0.25)


def test_a_rate_within_25_percent_is_no_drift_and_above_it_is_level_one():
    assert judged(days((40, 5))).level == 0  # 12.5 %: 25 % off, not more
    one_day = judged(days(*[(40, 4)] * 6, (40, 6)))  # 15 % today only
    assert one_day.level == 1 and one_day.divergence == pytest.approx(0.5)
    assert one_day.sustained_days == 1


def test_30_percent_on_each_of_seven_days_is_level_two():
    week = judged(days(*[(40, 6)] * 7))  # 15 % every day
    assert week.level == 2 and week.sustained_days == 7
    six = judged(days((40, 4), *[(40, 6)] * 6))  # the first of the seven days was normal
    assert six.level == 1 and six.sustained_days == 6


def test_sustained_means_the_same_direction_every_day():
    flipping = judged(days(*[(40, 6), (40, 2)] * 3, (40, 6)))  # 15 %, 5 %, 15 % ...
    assert flipping.sustained_days == 1 and flipping.level == 1


def test_days_with_too_few_studies_judge_nothing():
    small = judged(days(*[(10, 5)] * 7))  # 50 % but 10 studies a day
    assert small.level == 0 and small.divergence is None and small.period_rate is None
    pooled = judged(days(*[(10, 5)] * 7), period_days=7)  # 70 studies in the period
    assert pooled.level == 1 and pooled.sustained_days == 0


def test_the_baseline_comes_from_an_explicit_table_or_from_the_studies(tmp_path):
    assert baseline_from_record(
        {"escalation_baseline": {"ct": {"studies": 4, "escalated": 1}, "MR": 0.5, "CR": 0}}
    ) == {"CT": 0.25, "MR": 0.5}
    record = {
        "studies": [
            {"study_key": "S1", "modality": "CT", "observed_tier": "Critical"},
            {"study_key": "S2", "modality": "CT", "observed_tier": "Urgent"},
            {"study_key": "S3", "modality": "CR", "tier": "Routine"},
        ]
    }
    path = tmp_path / "acceptance.json"
    path.write_text(json.dumps(record))
    assert acceptance_baseline(path) == {"CT": 0.5}  # CR: no Critical study, no baseline
    assert acceptance_baseline("") == {}
    with pytest.raises(ConfigError, match="does not exist"):
        acceptance_baseline(tmp_path / "missing.json")
