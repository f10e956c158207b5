"""fetch_priors: find earlier studies of the patient in the PACS and move the best one here (I/O).

A PACS that does not answer, or a patient without priors, is not a failure: the run goes on
with "no prior available". Priors never hold up escalation; the flow starts this task
concurrently with inference.
"""

from __future__ import annotations

import logging

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydicom import Dataset

from integrations.db.analyses import AnalysisStore
from integrations.errors import PeerError, TransientError
from tasks.context import PriorRef, StudyContext
from tasks.runtime import get_runtime
from tasks.steps import recorded_step

log = logging.getLogger(__name__)


def study_query(patient_id: str, modality: str) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = patient_id
    query.StudyInstanceUID = ""
    query.StudyDate = ""
    query.StudyTime = ""
    query.AccessionNumber = ""
    query.ModalitiesInStudy = modality
    return query


@task(name="fetch_priors", cache_policy=NO_CACHE, persist_result=False)
def fetch_priors(context: StudyContext) -> PriorRef:
    runtime = get_runtime()
    with recorded_step("fetch_priors", context) as detail:
        study = runtime.store.study(context.study_instance_uid)
        if study is None or not study.patient_id:
            detail["prior"] = "no patient ID"
            return PriorRef(False, "no prior available: study has no Patient ID")
        modality = context.modalities[0] if context.modalities else ""
        pacs = runtime.pacs
        try:
            matches = pacs.find(
                study_query(study.patient_id, modality), study_instance_uid=study.study_instance_uid
            )
        except (PeerError, TransientError) as error:
            detail["prior"] = f"C-FIND failed: {error}"
            return PriorRef(False, f"no prior available: PACS did not answer C-FIND ({error})")
        candidates = [
            match
            for match in matches
            if str(match.get("StudyInstanceUID", "")) not in ("", study.study_instance_uid)
            and (not study.study_date or str(match.get("StudyDate", "")) <= study.study_date)
        ]
        detail["candidates"] = len(candidates)
        if not candidates:
            return PriorRef(False, "no prior available: no earlier study of this patient")
        best = max(
            candidates, key=lambda m: (str(m.get("StudyDate", "")), str(m.get("StudyTime", "")))
        )
        prior = PriorRef(
            True,
            study_instance_uid=str(best.StudyInstanceUID),
            study_date=str(best.get("StudyDate", "")),
            accession_number=str(best.get("AccessionNumber", "")),
        )
        analyses = AnalysisStore(runtime.database)
        runtime.store.register_prior(
            prior.study_instance_uid, study.patient_id, prior.accession_number
        )
        move = Dataset()
        move.QueryRetrieveLevel = "STUDY"
        move.StudyInstanceUID = prior.study_instance_uid
        try:
            outcome = pacs.move(
                move, runtime.settings.node.ae_title, study_instance_uid=study.study_instance_uid
            )
        except (PeerError, TransientError) as error:
            analyses.record_prior(
                study_instance_uid=study.study_instance_uid,
                prior_study_instance_uid=prior.study_instance_uid,
                prior_study_date=prior.study_date,
                prior_accession_number=prior.accession_number,
                modality=modality,
                status="move failed",
                detail=str(error),
            )
            detail["prior"] = f"C-MOVE failed: {error}"
            return PriorRef(False, f"no prior available: PACS did not move the prior ({error})")
        analyses.record_prior(
            study_instance_uid=study.study_instance_uid,
            prior_study_instance_uid=prior.study_instance_uid,
            prior_study_date=prior.study_date,
            prior_accession_number=prior.accession_number,
            modality=modality,
            status="moved",
            detail=f"{outcome.completed} completed, {outcome.failed} failed",
        )
        detail["prior"] = prior.study_instance_uid
        detail["moved"] = outcome.completed
        return prior
