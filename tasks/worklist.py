"""update_worklist: the study's row with its urgency tier, primary finding and rule, and the
tier's route to the PACS/RIS worklist as an HL7 priority update (I/O).

:func:`publish_tier` is shared with the escalate step, which writes the tier as soon as
inference yields it (only ever raising it within one run); ``update_worklist`` writes the
run's final tier when results are stored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from integrations.db.outbox import OutboxStore
from integrations.db.worklist import WorklistStore
from integrations.emr.enqueue import patient_key_for
from integrations.escalation.channels import outbox_priority
from integrations.hl7.priority import PriorityUpdate, build_priority_update
from models.results import UrgencyTier
from tasks.context import AnalysisRef, StudyContext
from tasks.runtime import Runtime, get_runtime
from tasks.steps import recorded_step, step_log

log = logging.getLogger(__name__)


def study_tier(analyses: Sequence[AnalysisRef]) -> tuple[UrgencyTier, AnalysisRef | None]:
    """The most urgent tier over the analyses, and the analysis that carries it."""
    ranked = sorted(
        (a for a in analyses if a.primary_finding),
        key=lambda a: (UrgencyTier(a.tier).rank, -(a.primary_probability or 0.0)),
    )
    tier = UrgencyTier.most_urgent([UrgencyTier(analysis.tier) for analysis in analyses])
    return tier, (ranked[0] if ranked else None)


def send_priority_update(
    runtime: Runtime, context: StudyContext, tier: UrgencyTier, primary: AnalysisRef | None
) -> str | None:
    """Queue the ORM^O01 / OMI^O23 priority update when the route and tier call for one.

    Returns the message control ID; the same study, generation and tier give the same ID, so
    a retry or rerun never queues a second copy.
    """
    worklist = runtime.settings.worklist
    if worklist.route == "none" or tier.value not in worklist.send_tiers:
        return None
    study = runtime.store.study(context.study_instance_uid)
    if study is None:
        return None
    row = WorklistStore(runtime.database).get(context.study_instance_uid) or {}
    update = PriorityUpdate(
        study_instance_uid=study.study_instance_uid,
        generation=context.generation,
        accession_number=study.accession_number,
        patient_id=study.patient_id,
        issuer_of_patient_id=study.issuer_of_patient_id,
        patient_name=study.patient_name,
        patient_birth_date=study.patient_birth_date,
        patient_sex=study.patient_sex,
        modality="/".join(study.modalities),
        study_description=study.study_description,
        patient_location=str(row.get("patient_location") or ""),
        tier=tier,
        primary_finding=primary.primary_finding if primary else "",
        rule=primary.urgency_rule if primary else "",
        order_control=worklist.order_control,
        sending_application=worklist.sending_application,
        sending_facility=worklist.sending_facility,
        receiving_application=worklist.receiving_application,
        receiving_facility=worklist.receiving_facility,
    )
    message_type, control_id, payload = build_priority_update(
        update, worklist.route, datetime.now(UTC), runtime.settings.ris.hl7_version
    )
    outbox = OutboxStore(runtime.database, "ris")  # [ris], never the EMR's endpoint
    outbox.enqueue(
        message_control_id=control_id,
        message_type=message_type,
        payload=payload,
        study_instance_uid=study.study_instance_uid,
        patient_key=patient_key_for(
            runtime.database, runtime.settings, study.patient_id, study.issuer_of_patient_id
        ),
        priority=outbox_priority(tier),
    )
    WorklistStore(runtime.database).record_priority_sent(
        study.study_instance_uid, control_id, tier.value
    )
    return control_id


def publish_tier(
    runtime: Runtime,
    context: StudyContext,
    analyses: Sequence[AnalysisRef],
    *,
    patient_location: str = "",
) -> tuple[UrgencyTier, bool]:
    """Raise the study's worklist tier as soon as an analysis yields it (never lowers it
    within a run); queue the priority update when it rose. Returns (tier, changed)."""
    tier, primary = study_tier(analyses)
    changed = WorklistStore(runtime.database).record_tier(
        context.study_instance_uid,
        generation=context.generation,
        tier=tier.value,
        tier_rank=tier.rank,
        primary_finding=primary.primary_finding if primary else "",
        primary_probability=primary.primary_probability if primary else None,
        tier_rule=primary.urgency_rule if primary else "",
        patient_location=patient_location,
        only_if_more_urgent=True,
        clinical_use=all(analysis.clinical_use for analysis in analyses),
    )
    if changed:
        send_priority_update(runtime, context, tier, primary)
    return tier, changed


@task(name="update_worklist", cache_policy=NO_CACHE, persist_result=False)
def update_worklist(
    context: StudyContext, analyses: list[AnalysisRef], results_stored: bool
) -> str:
    runtime = get_runtime()
    with recorded_step("update_worklist", context) as detail:
        tier, primary = study_tier(analyses)
        WorklistStore(runtime.database).record_outcome(
            context.study_instance_uid,
            tier=tier.value,
            tier_rank=tier.rank,
            primary_finding=primary.primary_finding if primary else "",
            results_stored=results_stored,
            primary_probability=primary.primary_probability if primary else None,
            tier_rule=primary.urgency_rule if primary else "",
            clinical_use=all(analysis.clinical_use for analysis in analyses),
        )
        control_id = send_priority_update(runtime, context, tier, primary)
        detail.update(
            tier=tier.value,
            primary_finding=primary.primary_finding if primary else "",
            rule=primary.urgency_rule if primary else "",
            priority_message=control_id,
        )
        step_log().info(
            "worklist: tier %s%s",
            tier.value,
            ", priority update queued" if control_id else "",
        )
        return tier.value
