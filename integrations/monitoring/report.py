"""The daily monitoring report as values, and the thresholds it is judged by (pure).

What IT reads every day after go-live: failed, stuck and unrouted studies; orphaned results
(analysed, but the SR is not in the PACS or the ORU was never acknowledged); each outbox's
backlog and its oldest message; interface drops; step latency percentiles; and the
escalation rate per modality against the acceptance baseline and the radiologists'
historical rate. Every value names studies by study key and UIDs only: no patient data.

Escalation-rate drift, per modality and reference rate (relative divergence
``|observed - reference| / reference``):

- level 1: the report period's rate, over at least ``min_studies_per_day`` studies,
  diverges by more than ``divergence_alert`` (25 %);
- level 2: on each of the last ``sustained_days`` days (7), with at least
  ``min_studies_per_day`` studies each, the rate diverges by more than
  ``sustained_divergence`` (30 %), always in the same direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from integrations.settings import MonitoringSettings

OrphanKind = Literal["sr_not_in_pacs", "oru_not_acknowledged"]


@dataclass(frozen=True)
class StudyIssue:
    """A failed, stuck or unrouted study: what state, since when, and why in words."""

    study_key: str
    study_instance_uid: str
    state: str
    since: datetime | None
    detail: str


@dataclass(frozen=True)
class Orphan:
    study_key: str
    study_instance_uid: str
    kind: OrphanKind
    # the SR's SOP Instance UID, or the ORU's message control ID
    reference: str
    detail: str


@dataclass(frozen=True)
class OutboxBacklog:
    outbox: str  # results_outbox, hl7_outbox, fhir_outbox, audit_outbox
    destination: str
    pending: int
    failed: int
    oldest_pending_seconds: float | None


@dataclass(frozen=True)
class InterfaceDrop:
    kind: str  # node_events kind (association_rejected, store_refused, ...) or hl7_rejected
    count: int
    sources: tuple[str, ...]  # calling AE titles and hosts, at most a few


@dataclass(frozen=True)
class StepLatency:
    step: str
    count: int
    failed: int
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None


@dataclass(frozen=True)
class DayRate:
    day: date
    studies: int
    escalated: int

    @property
    def rate(self) -> float | None:
        return self.escalated / self.studies if self.studies else None


@dataclass(frozen=True)
class Drift:
    """One modality's escalation rate against one reference rate."""

    modality: str
    reference: Literal["acceptance", "historical"]
    reference_rate: float
    period_rate: float | None
    period_studies: int
    divergence: float | None  # relative, of the period rate
    sustained_days: int  # consecutive latest days over the sustained threshold, same sign
    level: int  # 0 none, 1 divergence, 2 sustained divergence


@dataclass(frozen=True)
class EscalationRate:
    modality: str
    studies: int
    escalated: int
    days: tuple[DayRate, ...]
    drifts: tuple[Drift, ...]

    @property
    def rate(self) -> float | None:
        return self.escalated / self.studies if self.studies else None


@dataclass(frozen=True)
class Crossing:
    """A threshold the report crossed: what the alert says."""

    check: str
    level: int
    message: str


@dataclass(frozen=True)
class MonitoringReport:
    generated_at: datetime
    period_start: datetime
    period_end: datetime
    days: int
    failed: tuple[StudyIssue, ...]
    stuck: tuple[StudyIssue, ...]
    unrouted: tuple[StudyIssue, ...]
    orphans: tuple[Orphan, ...]
    orphans_checked: int
    orphan_check_error: str
    outboxes: tuple[OutboxBacklog, ...]
    interface_drops: tuple[InterfaceDrop, ...]
    latency: tuple[StepLatency, ...]
    escalation: tuple[EscalationRate, ...]
    acceptance_record: str
    acceptance_error: str = ""  # the record is configured but unreadable: no baseline
    crossings: tuple[Crossing, ...] = field(default=())

    @property
    def level(self) -> int:
        return max((crossing.level for crossing in self.crossings), default=0)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for rate, values in zip(self.escalation, data["escalation"], strict=True):
            values["rate"] = rate.rate
            for day, day_values in zip(rate.days, values["days"], strict=True):
                day_values["rate"] = day.rate
        data["level"] = self.level
        data["counts"] = self.counts()
        return _jsonable(data)

    def counts(self) -> dict[str, int]:
        return {
            "failed": len(self.failed),
            "stuck": len(self.stuck),
            "unrouted": len(self.unrouted),
            "orphans": len(self.orphans),
            "outbox_pending": sum(o.pending for o in self.outboxes),
            "outbox_failed": sum(o.failed for o in self.outboxes),
            "interface_drops": sum(d.count for d in self.interface_drops),
            "crossings": len(self.crossings),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def divergence(observed: float, reference: float) -> float:
    """Relative divergence of ``observed`` from ``reference`` (> 0)."""
    return abs(observed - reference) / reference


def drift(
    modality: str,
    reference: Literal["acceptance", "historical"],
    reference_rate: float,
    period: DayRate,
    days: Sequence[DayRate],
    settings: MonitoringSettings,
) -> Drift:
    """The drift of one modality's rate from ``reference_rate`` (see the module docstring).

    ``days`` are the daily rates, oldest first, ending with the report's last day.
    """
    enough = period.studies >= settings.min_studies_per_day and period.rate is not None
    period_divergence = divergence(period.rate, reference_rate) if enough else None  # type: ignore[arg-type]
    sustained = 0
    direction = 0
    for day in reversed(days):
        if day.rate is None or day.studies < settings.min_studies_per_day:
            break
        sign = 1 if day.rate > reference_rate else -1
        if divergence(day.rate, reference_rate) <= settings.sustained_divergence:
            break
        if direction and sign != direction:
            break
        direction = sign
        sustained += 1
    level = 0
    if period_divergence is not None and period_divergence > settings.divergence_alert:
        level = 1
    if sustained >= settings.sustained_days:
        level = 2
    return Drift(
        modality=modality,
        reference=reference,
        reference_rate=reference_rate,
        period_rate=period.rate if enough else None,
        period_studies=period.studies,
        divergence=period_divergence,
        sustained_days=sustained,
        level=level,
    )


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def crossings(report: MonitoringReport, settings: MonitoringSettings) -> tuple[Crossing, ...]:
    """Every threshold ``report`` crossed, most severe first."""
    found: list[Crossing] = []

    def count_check(check: str, items: Sequence[Any], threshold: int, words: str) -> None:
        if len(items) >= threshold:
            keys = ", ".join(item.study_key or item.study_instance_uid for item in items[:10])
            more = f" and {len(items) - 10} more" if len(items) > 10 else ""
            found.append(Crossing(check, 1, f"{len(items)} {words}: {keys}{more}"))

    count_check("failed_studies", report.failed, settings.failed_studies_alert, "failed studies")
    count_check("stuck_studies", report.stuck, settings.stuck_studies_alert, "stuck studies")
    count_check("orphans", report.orphans, settings.orphans_alert, "orphaned results")
    if report.orphan_check_error:
        found.append(
            Crossing("orphan_check", 1, f"orphaned SRs not checked: {report.orphan_check_error}")
        )
    if report.acceptance_error:
        found.append(Crossing("acceptance_baseline", 1, report.acceptance_error))
    age_limit = settings.outbox_age_alert_minutes * 60
    for outbox in report.outboxes:
        age = outbox.oldest_pending_seconds
        if age is not None and age > age_limit:
            found.append(
                Crossing(
                    "outbox_age",
                    1,
                    f"{outbox.outbox} to {outbox.destination}: {outbox.pending} pending,"
                    f" oldest waiting {age / 60:.0f} min",
                )
            )
        if outbox.failed:
            found.append(
                Crossing(
                    "outbox_failed",
                    1,
                    f"{outbox.outbox} to {outbox.destination}: {outbox.failed} failed for good",
                )
            )
    drops = sum(drop.count for drop in report.interface_drops)
    if drops >= settings.interface_drops_alert:
        kinds = ", ".join(f"{drop.kind} {drop.count}" for drop in report.interface_drops)
        found.append(Crossing("interface_drops", 1, f"{drops} interface drops ({kinds})"))
    for rate in report.escalation:
        for item in rate.drifts:
            if item.level == 2:
                found.append(
                    Crossing(
                        "escalation_rate_sustained",
                        2,
                        f"{item.modality} escalation rate diverges by more than"
                        f" {_percent(settings.sustained_divergence)} from the {item.reference}"
                        f" rate {_percent(item.reference_rate)} on each of the last"
                        f" {item.sustained_days} days",
                    )
                )
            elif item.level == 1 and item.divergence is not None and item.period_rate is not None:
                found.append(
                    Crossing(
                        "escalation_rate",
                        1,
                        f"{item.modality} escalation rate {_percent(item.period_rate)} over"
                        f" {item.period_studies} studies diverges {_percent(item.divergence)}"
                        f" from the {item.reference} rate {_percent(item.reference_rate)}",
                    )
                )
    return tuple(sorted(found, key=lambda crossing: -crossing.level))
