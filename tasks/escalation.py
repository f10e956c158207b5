"""escalate: Critical findings to the on-call team, first notification sent from here (I/O).

Runs as soon as an analyzer's inference returns, before priors, result objects or EMR
messages. Each Critical finding is recorded durably (one row per study and finding: the
idempotency key), claimed, and its first notification sent from this task itself, so it never
waits for Prefect scheduling; re-sends, the backup and acknowledgements are the escalation
service's (``pacsflow escalation-service``). The study's tier is then raised on the worklist.
A channel failure does not fail the run: the service retries what was not delivered.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from integrations.db.escalations import EscalationStore
from integrations.escalation.engine import CriticalFindingInput, engine_for
from integrations.escalation.rules import escalation_key
from tasks.context import AnalysisRef, StudyContext
from tasks.runtime import get_runtime
from tasks.steps import recorded_step, step_log
from tasks.worklist import publish_tier

__all__ = ["escalate", "escalation_key"]


@task(name="escalate", cache_policy=NO_CACHE, persist_result=False)
def escalate(context: StudyContext, analyses: list[AnalysisRef]) -> int:
    """Escalate the analyses' Critical findings; return how many escalations were opened."""
    runtime = get_runtime()
    # One "escalate" step per study and generation (the flow calls it after each analyzer; the
    # detail names the analyzers of the latest call and counts all escalations of the study).
    with recorded_step("escalate", context) as detail:
        findings = [
            CriticalFindingInput(
                analyzer=analysis.analyzer,
                label=finding.label,
                probability=finding.probability,
                code=finding.code,
                tier_rule=finding.rule,
                clinical_use=analysis.clinical_use,
            )
            for analysis in analyses
            for finding in analysis.critical_findings
        ]
        outcomes = []
        location = ""
        if findings:
            engine = engine_for(runtime, runtime.settings, runtime.database)
            outcomes = engine.open_and_notify(
                study_instance_uid=context.study_instance_uid,
                generation=context.generation,
                study_closed_at=context.closed_at,
                findings=findings,
            )
            location = engine.study_facts(context.study_instance_uid).patient_location
        tier, raised = publish_tier(runtime, context, analyses, patient_location=location)
        detail.update(
            analyzers=[analysis.analyzer for analysis in analyses],
            escalations_of_study=len(
                EscalationStore(runtime.database).for_study(context.study_instance_uid)
            ),
            critical_findings=len(findings),
            opened=len(outcomes),
            delivered=sum(outcome.delivered for outcome in outcomes),
            late=sum(outcome.late for outcome in outcomes),
            first_notification_seconds=[
                round(outcome.first_notification_seconds, 3)
                for outcome in outcomes
                if outcome.first_notification_seconds is not None
            ],
            tier=tier.value,
            tier_raised=raised,
        )
        if findings:
            delivered = sum(outcome.delivered for outcome in outcomes)
            level = step_log().info if delivered == len(outcomes) else step_log().warning
            level(
                "%d Critical findings, %d escalations opened, %d first pages delivered",
                len(findings),
                len(outcomes),
                delivered,
            )
        return len(outcomes)
