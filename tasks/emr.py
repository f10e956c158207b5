"""send_oru: the AI result as HL7 ORU^R01 into the outbox for the EMR (I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from integrations.db.outbox import OutboxStore
from integrations.hl7.oru import OruContext, build_oru, message_control_id
from integrations.result_files import load_analysis
from tasks.context import AnalysisRef, StudyContext
from tasks.runtime import get_runtime
from tasks.steps import recorded_step


@task(name="send_oru", cache_policy=NO_CACHE, persist_result=False)
def send_oru(context: StudyContext, analysis: AnalysisRef) -> str:
    runtime = get_runtime()
    with recorded_step(f"send_oru:{analysis.analyzer}", context) as detail:
        study = runtime.store.study(context.study_instance_uid)
        assert study is not None
        oru_context = OruContext(
            study_instance_uid=study.study_instance_uid,
            generation=context.generation,
            patient_id=study.patient_id,
            issuer_of_patient_id=study.issuer_of_patient_id,
            patient_name=study.patient_name,
            patient_birth_date=study.patient_birth_date,
            patient_sex=study.patient_sex,
            accession_number=study.accession_number,
            study_date=study.study_date,
        )
        result = load_analysis(Path(analysis.result_path))
        control_id = message_control_id(oru_context, result)
        queued = OutboxStore(runtime.database).enqueue(
            message_control_id=control_id,
            message_type="ORU^R01",
            payload=build_oru(oru_context, result, datetime.now(UTC)),
            study_instance_uid=study.study_instance_uid,
            patient_key=f"{study.issuer_of_patient_id}|{study.patient_id}",
        )
        detail.update(message_control_id=control_id, queued=queued)
        return control_id
