"""Interval change: nodule diameter, hemorrhage volume, mass size; absolute and percent."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from models.interval_change import (
    NO_PRIOR_AVAILABLE,
    ComparisonStatus,
    PriorComparison,
    PriorStudy,
    compare_with_prior,
    convert,
    no_prior,
    prior_without_measurements,
)
from models.results import AnalysisResult, CodedConcept, Finding, Measurement, UrgencyTier
from tests.unit.results import synthetic

MASS = CodedConcept("4147007", "SCT", "Mass")
LONG_AXIS = CodedConcept("103339001", "SCT", "Long Axis")
CM = CodedConcept("cm", "UCUM", "cm")
MM3 = CodedConcept("mm3", "UCUM", "mm3")
PRIOR_DATE = datetime.date(2024, 3, 14)


def finding(label, code, *measurements, present=True):
    return Finding(
        label=label,
        code=code,
        probability=0.9 if present else 0.1,
        threshold=0.5,
        present=present,
        tier=UrgencyTier.URGENT,
        measurements=tuple(Measurement(*m) for m in measurements),
    )


def analysis(*findings, status="analysed"):
    return AnalysisResult(
        analyzer="chest-ct",
        model=synthetic.MODEL,
        status=status,
        findings=tuple(findings),
        reason=None if status == "analysed" else "series too short",
    )


def prior(*findings):
    return PriorStudy("1.2.826.0.1.3680043.8.498.7", PRIOR_DATE, "ACC-OLD", tuple(findings))


def test_nodule_diameter_growth_in_mm_and_percent():
    current = analysis(
        finding("nodule", synthetic.NODULE, (synthetic.DIAMETER, 10.0, synthetic.MILLIMETER))
    )
    before = prior(
        finding("nodule", synthetic.NODULE, (synthetic.DIAMETER, 8.0, synthetic.MILLIMETER))
    )
    comparison = compare_with_prior(current, before)
    assert comparison.status == ComparisonStatus.COMPARED
    (change,) = comparison.changes
    assert (change.current_value, change.prior_value) == (10.0, 8.0)
    assert change.absolute_change == pytest.approx(2.0)
    assert change.percent_change == pytest.approx(25.0)
    assert change.unit == synthetic.MILLIMETER
    assert comparison.prior_study_date == PRIOR_DATE
    assert comparison.prior_accession_number == "ACC-OLD"
    summary = comparison.summary()
    assert "2024-03-14" in summary and "ACC-OLD" in summary and "+25%" in summary


def test_units_are_converted_to_the_current_unit():
    current = analysis(
        finding("hemorrhage", synthetic.HEMORRHAGE, (synthetic.VOLUME, 12.0, synthetic.MILLILITER)),
        finding("mass", MASS, (LONG_AXIS, 31.0, synthetic.MILLIMETER)),
    )
    before = prior(
        finding("hemorrhage", synthetic.HEMORRHAGE, (synthetic.VOLUME, 16000.0, MM3)),
        finding("mass", MASS, (LONG_AXIS, 2.5, CM)),
    )
    changes = {c.label: c for c in compare_with_prior(current, before).changes}
    assert changes["hemorrhage"].prior_value == pytest.approx(16.0)
    assert changes["hemorrhage"].absolute_change == pytest.approx(-4.0)
    assert changes["hemorrhage"].percent_change == pytest.approx(-25.0)
    assert changes["mass"].prior_value == pytest.approx(25.0)
    assert changes["mass"].absolute_change == pytest.approx(6.0)


def test_incompatible_units_and_unmatched_measurements_are_not_compared():
    current = analysis(
        finding("nodule", synthetic.NODULE, (synthetic.DIAMETER, 10.0, synthetic.MILLIMETER))
    )
    before = prior(
        finding(
            "nodule",
            synthetic.NODULE,
            (synthetic.DIAMETER, 1.0, synthetic.MILLILITER),
            (LONG_AXIS, 9.0, synthetic.MILLIMETER),
        )
    )
    comparison = compare_with_prior(current, before)
    assert comparison.compared and comparison.changes == ()
    assert "no measurable change" in comparison.summary()
    assert convert(1.0, "mm", "mL") is None
    assert convert(2.0, "cm", "mm") == pytest.approx(20.0)


def test_a_zero_prior_has_no_percent_change():
    current = analysis(
        finding("nodule", synthetic.NODULE, (synthetic.DIAMETER, 4.0, synthetic.MILLIMETER))
    )
    before = prior(
        finding("nodule", synthetic.NODULE, (synthetic.DIAMETER, 0.0, synthetic.MILLIMETER))
    )
    (change,) = compare_with_prior(current, before).changes
    assert change.percent_change is None
    assert "%" not in change.describe()


def test_new_and_resolved_findings():
    current = analysis(
        finding("nodule", synthetic.NODULE, present=True),
        finding("effusion", synthetic.EFFUSION, present=False),
        finding("mass", MASS, present=True),
    )
    before = prior(
        finding("nodule", synthetic.NODULE, present=False),
        finding("effusion", synthetic.EFFUSION, present=True),
    )
    comparison = compare_with_prior(current, before)
    assert comparison.new_findings == ("nodule", "mass")
    assert comparison.resolved_findings == ("effusion",)


def test_findings_are_matched_by_code_before_label():
    current = analysis(
        finding("lung-nodule", synthetic.NODULE, (synthetic.DIAMETER, 6.0, synthetic.MILLIMETER))
    )
    before = prior(
        finding("nodule", synthetic.NODULE, (synthetic.DIAMETER, 5.0, synthetic.MILLIMETER))
    )
    (change,) = compare_with_prior(current, before).changes
    assert change.label == "lung-nodule" and change.prior_value == 5.0


def test_no_prior_is_an_outcome_not_an_error():
    current = analysis(finding("nodule", synthetic.NODULE))
    assert compare_with_prior(current, None) == no_prior()
    assert no_prior().summary() == NO_PRIOR_AVAILABLE
    assert not no_prior("PACS did not answer C-FIND").compared
    unanalysable = compare_with_prior(analysis(status="not_analysable"), prior())
    assert not unanalysable.compared and "not analysable" in unanalysable.reason
    with pytest.raises(ValueError, match="reason"):
        no_prior("  ")
    with pytest.raises(TypeError, match="prior"):
        compare_with_prior(current, "1.2.3")  # type: ignore[arg-type]


def test_comparison_survives_json():
    current = analysis(
        finding("nodule", synthetic.NODULE, (synthetic.DIAMETER, 10.0, synthetic.MILLIMETER))
    )
    comparison = compare_with_prior(
        current,
        prior(finding("nodule", synthetic.NODULE, (synthetic.DIAMETER, 8.0, synthetic.MILLIMETER))),
    )
    data = comparison.to_json()
    assert data["changes"][0]["percent_change"] == pytest.approx(25.0)
    assert PriorComparison.from_json(data) == comparison
    assert PriorComparison.from_json(no_prior().to_json()) == no_prior()


def test_prior_study_validates_its_inputs():
    with pytest.raises(ValueError, match="study_instance_uid"):
        PriorStudy("", None, "", ())
    with pytest.raises(TypeError, match="study_date"):
        PriorStudy("1.2.3", "20240101", "", ())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="findings"):
        PriorStudy("1.2.3", None, "", ("nodule",))  # type: ignore[arg-type]
    assert dataclasses.replace(prior(), origin="analysis").origin == "analysis"


def test_a_prior_without_measurements_is_named_but_not_compared():
    outcome = prior_without_measurements("1.2.3.9", PRIOR_DATE, "ACC-OLD")
    assert not outcome.compared and outcome.changes == ()
    assert (
        outcome.summary()
        == "Prior study 2024-03-14 (ACC-OLD): no earlier AI measurements to compare"
    )
    assert PriorComparison.from_json(outcome.to_json()) == outcome
    with pytest.raises(ValueError, match="study_instance_uid"):
        prior_without_measurements("", None, "")
