"""fetch_priors: find the best earlier study of the patient in the PACS and move it here (I/O).

The policy (look-back, same modality and body part, newest first, SR detection) lives in
``integrations.dicom.priors``; this task feeds it the study, lets the node expect the prior
(kept, never processed itself) and records the outcome. A PACS that does not answer, or a
patient without priors, is not a failure: the run goes on with "no prior available". Priors
never hold up escalation: the flow runs this task concurrently with inference.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from integrations.db.analyses import AnalysisStore
from integrations.dicom.priors import (
    CurrentStudy,
    PriorCandidate,
    fetch_prior,
    not_available,
    parse_date,
)
from tasks.context import PriorRef, StudyContext
from tasks.runtime import get_runtime
from tasks.steps import recorded_step, step_log


def current_study(context: StudyContext) -> CurrentStudy | None:
    runtime = get_runtime()
    study = runtime.store.study(context.study_instance_uid)
    if study is None:
        return None
    routed = {uid for series in context.analyzers.values() for uid in series}
    series = [
        s
        for s in runtime.store.series_of(context.study_instance_uid)
        if s.series_instance_uid in routed
    ]
    first = series[0] if series else None
    return CurrentStudy(
        study_instance_uid=study.study_instance_uid,
        patient_id=study.patient_id,
        study_date=parse_date(study.study_date),
        modality=(first.modality if first else (study.modalities[0] if study.modalities else "")),
        body_part=first.body_part_examined if first else "",
        study_time=study.study_time,
        issuer_of_patient_id=study.issuer_of_patient_id,
    )


@task(name="fetch_priors", cache_policy=NO_CACHE, persist_result=False)
def fetch_priors(context: StudyContext) -> PriorRef:
    runtime = get_runtime()
    settings = runtime.settings
    with recorded_step("fetch_priors", context) as detail:
        current = current_study(context)
        if not settings.priors.enabled:
            detail["prior"] = "disabled"
            return PriorRef(False, not_available("prior comparison is disabled at this site"))
        if current is None or not current.patient_id:
            detail["prior"] = "no patient ID"
            return PriorRef(False, not_available("study has no Patient ID"))

        def expect(prior: PriorCandidate) -> None:
            runtime.store.register_prior(
                prior.study_instance_uid, current.patient_id, prior.accession_number
            )

        outcome = fetch_prior(
            runtime.pacs_for_priors,
            current,
            settings.priors,
            destination_ae_title=settings.node.ae_title,
            before_move=expect,
        )
        chosen = outcome.search.prior
        detail.update(
            candidates=outcome.search.candidates, moved=outcome.moved, failed=outcome.failed
        )
        if chosen is not None:
            AnalysisStore(runtime.database).record_prior(
                study_instance_uid=current.study_instance_uid,
                prior_study_instance_uid=chosen.study_instance_uid,
                prior_study_date=chosen.study_date.strftime("%Y%m%d") if chosen.study_date else "",
                prior_accession_number=chosen.accession_number,
                modality=current.modality,
                status="moved" if outcome.available else "move failed",
                detail=outcome.reason or f"{outcome.moved} instances moved",
            )
        if not outcome.available:
            reason = outcome.reason or not_available("no earlier study of this patient")
            detail["prior"] = reason
            # A PACS that did not answer or move is a degraded run, not "no prior exists".
            if chosen is not None or "C-FIND" in reason:
                detail["degraded"] = True
                step_log().warning("going on without a prior: %s", reason)
            else:
                step_log().info("%s", reason)
            return PriorRef(False, reason)
        assert chosen is not None
        detail["prior"] = chosen.study_instance_uid
        step_log().info("prior moved here: %d instances", outcome.moved)
        return PriorRef(
            True,
            study_instance_uid=chosen.study_instance_uid,
            study_date=chosen.study_date.strftime("%Y%m%d") if chosen.study_date else "",
            accession_number=chosen.accession_number,
        )
