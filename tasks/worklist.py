"""update_worklist: the study's row with its urgency tier and primary finding (I/O)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from integrations.db.worklist import WorklistStore
from models.results import UrgencyTier
from tasks.context import AnalysisRef, StudyContext
from tasks.runtime import get_runtime
from tasks.steps import recorded_step


@task(name="update_worklist", cache_policy=NO_CACHE, persist_result=False)
def update_worklist(
    context: StudyContext, analyses: list[AnalysisRef], results_stored: bool
) -> str:
    runtime = get_runtime()
    with recorded_step("update_worklist", context) as detail:
        tier = UrgencyTier.most_urgent([UrgencyTier(analysis.tier) for analysis in analyses])
        ranked = sorted(
            (a for a in analyses if a.primary_finding), key=lambda a: UrgencyTier(a.tier).rank
        )
        primary = ranked[0].primary_finding if ranked else ""
        WorklistStore(runtime.database).record_outcome(
            context.study_instance_uid,
            tier=tier.value,
            tier_rank=tier.rank,
            primary_finding=primary,
            results_stored=results_stored,
        )
        detail.update(tier=tier.value, primary_finding=primary)
        return tier.value
