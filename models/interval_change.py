"""Interval change between the current study's findings and a prior study's (pure).

Compares every measurement the current analysis reports (nodule diameter, hemorrhage volume,
mass size...) with the same measurement of the same finding on the prior study: absolute
change in the current unit and percent change, with the prior study's date and accession.
Findings are matched by their code (value and scheme), measurements by their name code;
units are converted within one UCUM dimension (mm / cm / m, mL / cm3 / mm3 / L, mm2 / cm2).

The prior's findings come from a pacsflow SR found in the PACS (``integrations.dicom.sr_reader``)
or from analysing the moved prior images. "No prior" is a normal outcome, never an error.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from models.results import AnalysisResult, CodedConcept, Finding, Measurement

NO_PRIOR_AVAILABLE: Final = "no prior available"
NO_EARLIER_MEASUREMENTS: Final = "no earlier AI measurements to compare"

# UCUM code -> (dimension, factor to the dimension's base unit).
_UCUM_UNITS: Final[dict[str, tuple[str, float]]] = {
    "um": ("length", 1e-3),
    "mm": ("length", 1.0),
    "cm": ("length", 10.0),
    "m": ("length", 1000.0),
    "mm2": ("area", 1.0),
    "cm2": ("area", 100.0),
    "mm3": ("volume", 1e-3),
    "uL": ("volume", 1e-3),
    "ul": ("volume", 1e-3),
    "mL": ("volume", 1.0),
    "ml": ("volume", 1.0),
    "cm3": ("volume", 1.0),
    "L": ("volume", 1000.0),
    "l": ("volume", 1000.0),
    "dL": ("volume", 100.0),
}


class ComparisonStatus(StrEnum):
    COMPARED = "compared"
    # A prior study exists (and may have been moved), but there were no measurements to compare.
    PRIOR_WITHOUT_MEASUREMENTS = "prior_without_measurements"
    NO_PRIOR = "no_prior"


@dataclass(frozen=True)
class PriorStudy:
    """What is known about one earlier study of the patient: identity and findings."""

    study_instance_uid: str
    study_date: datetime.date | None
    accession_number: str
    findings: tuple[Finding, ...]
    # Where the findings came from: "sr" (a pacsflow SR in the PACS) or "analysis".
    origin: str = "sr"

    def __post_init__(self) -> None:
        if not self.study_instance_uid:
            raise ValueError("study_instance_uid must not be empty")
        if self.study_date is not None and not isinstance(self.study_date, datetime.date):
            raise TypeError("study_date must be a datetime.date or None")
        for finding in self.findings:
            if not isinstance(finding, Finding):
                raise TypeError("findings must contain Finding values")


@dataclass(frozen=True)
class MeasurementChange:
    """One quantity of one finding, now and on the prior study (in the current unit)."""

    label: str
    finding: CodedConcept
    quantity: CodedConcept
    unit: CodedConcept
    current_value: float
    prior_value: float

    @property
    def absolute_change(self) -> float:
        return self.current_value - self.prior_value

    @property
    def percent_change(self) -> float | None:
        """None when the prior value is zero (a percentage is undefined)."""
        if self.prior_value == 0:
            return None
        return 100.0 * self.absolute_change / abs(self.prior_value)

    def describe(self) -> str:
        unit = self.unit.value
        text = (
            f"{self.finding.meaning} {self.quantity.meaning.lower()} "
            f"{self.prior_value:.1f} {unit} -> {self.current_value:.1f} {unit} "
            f"({self.absolute_change:+.1f} {unit}"
        )
        percent = self.percent_change
        return text + (f", {percent:+.0f}%)" if percent is not None else ")")

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "finding": _concept_json(self.finding),
            "quantity": _concept_json(self.quantity),
            "unit": _concept_json(self.unit),
            "current_value": self.current_value,
            "prior_value": self.prior_value,
            "absolute_change": self.absolute_change,
            "percent_change": self.percent_change,
        }


@dataclass(frozen=True)
class PriorComparison:
    """The outcome of prior comparison for one analysis, for the SR, the worklist and the EMR."""

    status: ComparisonStatus
    reason: str = ""
    prior_study_instance_uid: str = ""
    prior_study_date: datetime.date | None = None
    prior_accession_number: str = ""
    changes: tuple[MeasurementChange, ...] = ()
    new_findings: tuple[str, ...] = ()
    resolved_findings: tuple[str, ...] = ()

    @property
    def compared(self) -> bool:
        return self.status == ComparisonStatus.COMPARED

    def summary(self) -> str:
        """One line for a worklist column or an OBX: what changed since which study."""
        date = self.prior_study_date.isoformat() if self.prior_study_date else "unknown date"
        accession = self.prior_accession_number or "no accession"
        if self.status == ComparisonStatus.PRIOR_WITHOUT_MEASUREMENTS:
            return f"Prior study {date} ({accession}): {self.reason or NO_EARLIER_MEASUREMENTS}"
        if not self.compared:
            return self.reason or NO_PRIOR_AVAILABLE
        parts = [change.describe() for change in self.changes]
        parts += [f"new: {label}" for label in self.new_findings]
        parts += [f"resolved: {label}" for label in self.resolved_findings]
        body = "; ".join(parts) if parts else "no measurable change"
        return f"Compared with {date} ({accession}): {body}"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "reason": self.reason,
            "prior_study_instance_uid": self.prior_study_instance_uid,
            "prior_study_date": self.prior_study_date.isoformat()
            if self.prior_study_date
            else None,
            "prior_accession_number": self.prior_accession_number,
            "changes": [change.to_json() for change in self.changes],
            "new_findings": list(self.new_findings),
            "resolved_findings": list(self.resolved_findings),
            "summary": self.summary(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PriorComparison:
        date = data.get("prior_study_date")
        return cls(
            status=ComparisonStatus(data["status"]),
            reason=str(data.get("reason", "")),
            prior_study_instance_uid=str(data.get("prior_study_instance_uid", "")),
            prior_study_date=datetime.date.fromisoformat(date) if date else None,
            prior_accession_number=str(data.get("prior_accession_number", "")),
            changes=tuple(
                MeasurementChange(
                    label=item["label"],
                    finding=CodedConcept(**item["finding"]),
                    quantity=CodedConcept(**item["quantity"]),
                    unit=CodedConcept(**item["unit"]),
                    current_value=float(item["current_value"]),
                    prior_value=float(item["prior_value"]),
                )
                for item in data.get("changes", ())
            ),
            new_findings=tuple(data.get("new_findings", ())),
            resolved_findings=tuple(data.get("resolved_findings", ())),
        )


def no_prior(reason: str = NO_PRIOR_AVAILABLE) -> PriorComparison:
    """The comparison outcome when there is nothing to compare with (never an error)."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("reason must be a non-empty string")
    return PriorComparison(status=ComparisonStatus.NO_PRIOR, reason=reason.strip())


def prior_without_measurements(
    study_instance_uid: str,
    study_date: datetime.date | None,
    accession_number: str,
    reason: str = NO_EARLIER_MEASUREMENTS,
) -> PriorComparison:
    """A prior exists but holds nothing to compare with (no pacsflow SR of this analyzer)."""
    if not study_instance_uid:
        raise ValueError("study_instance_uid must not be empty")
    return PriorComparison(
        status=ComparisonStatus.PRIOR_WITHOUT_MEASUREMENTS,
        reason=reason,
        prior_study_instance_uid=study_instance_uid,
        prior_study_date=study_date,
        prior_accession_number=accession_number,
    )


def compare_with_prior(current: AnalysisResult, prior: PriorStudy | None) -> PriorComparison:
    """Interval change of every measurement the current analysis and the prior share."""
    if not isinstance(current, AnalysisResult):
        raise TypeError("current must be an AnalysisResult")
    if prior is None:
        return no_prior()
    if not isinstance(prior, PriorStudy):
        raise TypeError("prior must be a PriorStudy or None")
    if current.status != "analysed":
        return no_prior(f"current study not analysable: {current.reason or 'no reason given'}")

    changes: list[MeasurementChange] = []
    new_findings: list[str] = []
    resolved_findings: list[str] = []
    for finding in current.findings:
        before = _matching_finding(finding, prior.findings)
        if before is None:
            if finding.present:
                new_findings.append(finding.label)
            continue
        if finding.present and not before.present:
            new_findings.append(finding.label)
        elif before.present and not finding.present:
            resolved_findings.append(finding.label)
        for measurement in finding.measurements:
            previous = _matching_measurement(measurement, before.measurements)
            if previous is None:
                continue
            prior_value = convert(previous.value, previous.unit.value, measurement.unit.value)
            if prior_value is None or not math.isfinite(measurement.value):
                continue
            changes.append(
                MeasurementChange(
                    label=finding.label,
                    finding=finding.code,
                    quantity=measurement.name,
                    unit=measurement.unit,
                    current_value=float(measurement.value),
                    prior_value=prior_value,
                )
            )
    return PriorComparison(
        status=ComparisonStatus.COMPARED,
        prior_study_instance_uid=prior.study_instance_uid,
        prior_study_date=prior.study_date,
        prior_accession_number=prior.accession_number,
        changes=tuple(changes),
        new_findings=tuple(new_findings),
        resolved_findings=tuple(resolved_findings),
    )


def convert(value: float, from_unit: str, to_unit: str) -> float | None:
    """``value`` in ``from_unit`` expressed in ``to_unit`` (UCUM), None if not convertible."""
    if from_unit == to_unit:
        return float(value) if math.isfinite(value) else None
    source = _UCUM_UNITS.get(from_unit)
    target = _UCUM_UNITS.get(to_unit)
    if source is None or target is None or source[0] != target[0] or not math.isfinite(value):
        return None
    return float(value) * source[1] / target[1]


def _same_code(left: CodedConcept, right: CodedConcept) -> bool:
    return (left.value, left.scheme) == (right.value, right.scheme)


def _matching_finding(finding: Finding, candidates: tuple[Finding, ...]) -> Finding | None:
    for candidate in candidates:
        if _same_code(candidate.code, finding.code):
            return candidate
    for candidate in candidates:
        if candidate.label == finding.label:
            return candidate
    return None


def _matching_measurement(
    measurement: Measurement, candidates: tuple[Measurement, ...]
) -> Measurement | None:
    for candidate in candidates:
        if _same_code(candidate.name, measurement.name):
            return candidate
    return None


def _concept_json(concept: CodedConcept) -> dict[str, str]:
    return {"value": concept.value, "scheme": concept.scheme, "meaning": concept.meaning}
