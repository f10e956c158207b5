"""The run's operator view in Prefect: a PHI-free Markdown artifact of what happened (I/O).

Collected from pacsflow's database at the end of a run (analyses, result objects, EMR
outboxes, escalations) and rendered by :mod:`integrations.operator_report`, which never
sees a patient name, patient ID, birth date or accession number.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from integrations.db.analyses import AnalysisStore
from integrations.db.escalations import EscalationStore
from integrations.operator_report import (
    AnalyzerLine,
    EscalationLine,
    MessageLine,
    ObjectsLine,
    RunSummary,
    artifact_key,
    render_markdown,
)
from models.interval_change import NO_PRIOR_AVAILABLE
from tasks.context import PriorRef, StudyContext
from tasks.runtime import Runtime

log = logging.getLogger(__name__)


def _findings(summary: dict) -> tuple[str, ...]:
    return tuple(
        f"{finding['label']} {finding['probability']:.2f} ({finding['tier']})"
        for finding in summary.get("positive", [])
    )


def run_summary(
    runtime: Runtime,
    context: StudyContext,
    *,
    outcome: str,
    tier: str = "",
    prior: PriorRef | None = None,
    failure: str = "",
    degraded: tuple[str, ...] = (),
) -> RunSummary:
    uid, generation = context.study_instance_uid, context.generation
    analyses = AnalysisStore(runtime.database)
    analyzer_lines = tuple(
        AnalyzerLine(
            analyzer=row["analyzer"],
            model_version=row["model_version"],
            status=row["status"],
            tier=row["tier"],
            findings=_findings(row["summary"] or {}),
            reason=str((row["summary"] or {}).get("reason") or ""),
        )
        for row in analyses.analyses(uid)
        if row["generation"] == generation
    )
    by_kind: dict[str, list] = defaultdict(list)
    for row in analyses.result_objects(uid):
        if row["generation"] == generation:
            by_kind[row["kind"]].append(row)
    objects = tuple(
        ObjectsLine(
            kind=kind,
            count=len(rows),
            stored=sum(row["stored_at"] is not None for row in rows),
            last_stored_at=max((r["stored_at"] for r in rows if r["stored_at"]), default=None),
        )
        for kind, rows in sorted(by_kind.items())
    )
    with runtime.database.connection() as conn:
        hl7 = conn.execute(
            "SELECT message_type, state, attempts FROM hl7_outbox"
            " WHERE study_instance_uid = %s ORDER BY id",
            (uid,),
        ).fetchall()
        fhir = conn.execute(
            "SELECT 'FHIR ' || resource_type AS message_type, state, attempts FROM fhir_outbox"
            " WHERE study_instance_uid = %s ORDER BY id",
            (uid,),
        ).fetchall()
    for step, row in runtime.store.steps(uid, generation).items():
        detail = row["detail"] or {}
        if step == "fetch_priors" and detail.get("degraded"):
            degraded += (f"the prior: {prior_in_words(prior)}",)
        if step.startswith("build_overlays:"):
            degraded += tuple(
                f"{step.split(':', 1)[1]} {item}" for item in detail.get("skipped", [])
            )
    escalations = tuple(
        EscalationLine(
            finding=record.finding,
            team=record.team,
            state=record.state,
            notifications_sent=record.notifications_sent,
            first_notification_seconds=record.first_notification_seconds,
        )
        for record in EscalationStore(runtime.database).for_study(uid)
        if record.generation == generation
    )
    return RunSummary(
        study_key=context.study_key,
        generation=generation,
        modalities=context.modalities,
        outcome=outcome,
        tier=tier,
        analyzers=analyzer_lines,
        objects=objects,
        pacs=runtime.pacs.peer.named,
        messages=tuple(MessageLine(**row) for row in [*hl7, *fhir]),
        escalations=escalations,
        prior=prior_in_words(prior),
        unrouted_reason=context.unrouted_reason or "" if outcome == "unrouted" else "",
        failure=failure,
        degraded=degraded,
    )


def prior_in_words(prior: PriorRef | None) -> str:
    if prior is None:
        return "not looked up"
    if prior.available:
        return f"compared with the study of {prior.study_date or 'an unknown date'}"
    return prior.reason.replace(f"{NO_PRIOR_AVAILABLE}: ", "no prior: ", 1)


async def publish_run_summary(runtime: Runtime, context: StudyContext, **outcome: object) -> None:
    """Create the run's artifact; a failure to publish never fails the study."""
    from prefect.artifacts import acreate_markdown_artifact

    try:
        summary = run_summary(runtime, context, **outcome)  # type: ignore[arg-type]
        await acreate_markdown_artifact(
            markdown=render_markdown(summary),
            key=artifact_key(context.study_key),
            description=f"{context.study_key} generation {context.generation}: {summary.outcome}",
        )
    except Exception:
        log.warning("could not publish the run summary of %s", context.study_key, exc_info=True)
