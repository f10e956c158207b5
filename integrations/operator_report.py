"""What an IT operator reads about one run in the Prefect UI, with no patient data (pure).

The run summary (a Markdown artifact) and a failed run's state message are built here from
small values the flow collects: analyzers and tiers, result objects, EMR messages,
escalations, the prior outcome. Nothing here takes a patient name, patient ID, birth date or
accession number, so nothing here can print one: the study is named by its opaque key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from integrations.errors import PacsflowError, PeerError, TransientError


@dataclass(frozen=True)
class AnalyzerLine:
    analyzer: str
    model_version: str
    status: str  # analysed / not_analysable / ...
    tier: str
    findings: tuple[str, ...]  # "Pneumothorax 0.91 (Critical)"
    reason: str = ""  # why not analysable


@dataclass(frozen=True)
class ObjectsLine:
    kind: str  # sr, gsps, sc, seg...
    count: int
    stored: int  # the rest wait in the results outbox
    last_stored_at: datetime | None


@dataclass(frozen=True)
class MessageLine:
    message_type: str  # ORU^R01, FHIR Bundle, ORM^O01...
    state: str  # pending / sent / failed
    attempts: int


@dataclass(frozen=True)
class EscalationLine:
    finding: str
    team: str
    state: str
    notifications_sent: int
    first_notification_seconds: float | None


@dataclass(frozen=True)
class RunSummary:
    study_key: str
    generation: int
    modalities: tuple[str, ...]
    outcome: str  # done / failed / unrouted
    tier: str = ""
    analyzers: tuple[AnalyzerLine, ...] = ()
    objects: tuple[ObjectsLine, ...] = ()
    pacs: str = ""  # AE@host:port the objects go to
    messages: tuple[MessageLine, ...] = ()
    escalations: tuple[EscalationLine, ...] = ()
    prior: str = ""  # the prior outcome in words
    unrouted_reason: str = ""
    failure: str = ""  # the failed run's state message
    degraded: tuple[str, ...] = field(default_factory=tuple)  # steps that went on without


def artifact_key(study_key: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return f"study-{study_key.lower()}"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if moment else ""


def render_markdown(summary: RunSummary) -> str:
    """The run's operator view: one short section per stage, in plain words."""
    lines = [
        f"# {'/'.join(summary.modalities) or 'study'} {summary.study_key}"
        f" generation {summary.generation}: {summary.outcome}",
        "",
    ]
    if summary.failure:
        lines += [f"**Failed:** {summary.failure}", ""]
    if summary.unrouted_reason:
        lines += [f"**Not routed:** {summary.unrouted_reason}", ""]
    if summary.degraded:
        lines += ["**Went on without:**", *[f"- {item}" for item in summary.degraded], ""]
    if summary.analyzers:
        lines += [
            f"## AI: tier {summary.tier or 'none'}",
            "",
            "| analyzer | model | status | tier | findings |",
            "|---|---|---|---|---|",
        ]
        for line in summary.analyzers:
            findings = ", ".join(line.findings) or ("—" if not line.reason else line.reason)
            lines.append(
                f"| {line.analyzer} | {line.model_version} | {line.status} | {line.tier}"
                f" | {findings} |"
            )
        lines.append("")
    lines += [f"## Prior: {summary.prior or 'not looked up'}", ""]
    lines += [f"## Result objects to {summary.pacs or 'the PACS'}", ""]
    if summary.objects:
        lines += ["| kind | built | stored | last stored |", "|---|---|---|---|"]
        for item in summary.objects:
            lines.append(
                f"| {item.kind} | {item.count} | {item.stored}"
                f" | {_when(item.last_stored_at) or 'queued'} |"
            )
    else:
        lines.append("none built")
    lines += ["", "## EMR messages", ""]
    if summary.messages:
        lines += ["| message | state | attempts |", "|---|---|---|"]
        lines += [f"| {m.message_type} | {m.state} | {m.attempts} |" for m in summary.messages]
    else:
        lines.append("none queued")
    lines += ["", "## Escalation", ""]
    if summary.escalations:
        lines += [
            "| finding | team | state | notifications | first page after close |",
            "|---|---|---|---|---|",
        ]
        for e in summary.escalations:
            first = (
                f"{e.first_notification_seconds:.1f} s"
                if e.first_notification_seconds is not None
                else "not yet"
            )
            lines.append(
                f"| {e.finding} | {e.team or 'no team'} | {e.state} | {e.notifications_sent}"
                f" | {first} |"
            )
    else:
        lines.append("no Critical finding, nobody paged")
    return "\n".join(lines) + "\n"


# -- failures in plain words ---------------------------------------------------------------

_STEP_WORDS = {
    "load_study": "loading the study",
    "fetch_priors": "fetching the prior",
    "run_inference": "AI inference",
    "escalate": "escalating a Critical finding",
    "build_results": "building the SR",
    "build_overlays": "building the overlays",
    "store_results": "storing the SR in the PACS",
    "store_overlays": "storing the overlays in the PACS",
    "update_worklist": "updating the worklist",
    "send_oru": "queueing the EMR result",
}


def failure_message(step: str, error: BaseException) -> str:
    """A failed run's state message: what failed and what to do, in plain words.

    ``step`` is the task that failed (``store_results``); the error's own text comes from
    the boundary that raised it, which names the peer and the cause.
    """
    doing = _STEP_WORDS.get(step.split(":", 1)[0], step or "the run")
    text = str(error) or type(error).__name__
    advice = getattr(error, "advice", "")
    if not advice:
        if isinstance(error, TransientError):
            advice = "pacsflow retried; rerun the study once the peer is back (`pacsflow rerun`)"
        elif isinstance(error, PeerError):
            advice = "the peer refused; fix its configuration, then rerun the study"
        elif not isinstance(error, PacsflowError):
            advice = "an unexpected error: see the task's log for the traceback"
    message = f"{doing} failed: {text}"
    return f"{message}: {advice}" if advice else message
