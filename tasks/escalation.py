"""escalate: Critical findings recorded for escalation, once per study and finding (I/O).

Runs as soon as inference yields a Critical finding, before priors, result objects or EMR
messages. The idempotency key (study, analyzer, finding) makes retries and reruns escalate
once.
"""

from __future__ import annotations

import hashlib

from prefect import task
from prefect.cache_policies import NO_CACHE

from integrations.db.escalations import EscalationStore
from tasks.context import AnalysisRef, StudyContext
from tasks.runtime import get_runtime
from tasks.steps import recorded_step


def escalation_key(study_instance_uid: str, analyzer: str, finding: str) -> str:
    return hashlib.sha256(f"{study_instance_uid}|{analyzer}|{finding}".encode()).hexdigest()[:32]


@task(name="escalate", cache_policy=NO_CACHE, persist_result=False)
def escalate(context: StudyContext, analyses: list[AnalysisRef]) -> int:
    runtime = get_runtime()
    with recorded_step("escalate", context) as detail:
        store = EscalationStore(runtime.database)
        opened = 0
        for analysis in analyses:
            for finding in analysis.critical_findings:
                opened += store.open(
                    idempotency_key=escalation_key(
                        context.study_instance_uid, analysis.analyzer, finding.label
                    ),
                    study_instance_uid=context.study_instance_uid,
                    finding=finding.label,
                    tier="Critical",
                    probability=finding.probability,
                    study_closed_at=context.closed_at,
                )
        detail["opened"] = opened
        return opened
