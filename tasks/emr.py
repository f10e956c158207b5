"""send_oru: the AI result into the EMR outboxes, HL7 ORU^R01 and FHIR DiagnosticReport (I/O).

The task only writes the outbox rows (a result document, rendered into the message when it is
sent, so a later ADT still enriches it); ``pacsflow emr-sender`` delivers them with retries.
Writing is idempotent: a rerun with the same inputs (the same SR) queues nothing new; a
result with changed inputs corrects the earlier final one (ORU ``C``, FHIR ``amended``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from integrations.db.analyses import AnalysisStore
from integrations.emr.document import ResultDocument
from integrations.emr.enqueue import enqueue_result, order_from_instance, study_facts
from integrations.result_files import load_analysis
from tasks.context import AnalysisRef, StudyContext
from tasks.runtime import get_runtime
from tasks.steps import recorded_step, step_log


@task(name="send_oru", cache_policy=NO_CACHE, persist_result=False)
def send_oru(context: StudyContext, analysis: AnalysisRef) -> str:
    """Queue the result for the EMR; returns the ORU's message control ID (MSH-10)."""
    runtime = get_runtime()
    with recorded_step(f"send_oru:{analysis.analyzer}", context) as detail:
        study = runtime.store.study(context.study_instance_uid)
        if study is None:
            raise LookupError(f"study {context.study_instance_uid} is not recorded")
        instances = runtime.store.instances(study.study_instance_uid)
        report = AnalysisStore(runtime.database).live_report(
            study.study_instance_uid, analysis.analyzer
        )
        document = ResultDocument(
            study=study_facts(study),
            order=order_from_instance(instances[0].path if instances else None, study),
            generation=context.generation,
            analysis=load_analysis(Path(analysis.result_path)),
            created_at=datetime.now(UTC),
            sr_instance_uid=report["sop_instance_uid"] if report else "",
            final=report is None or report["status"] != "preliminary",
        )
        queued = enqueue_result(runtime.database, runtime.settings, document)
        detail.update(
            corrects=bool(queued.corrects),
            message_control_id=queued.message_control_id,
            hl7_queued=queued.hl7_queued,
            fhir_queued=queued.fhir_queued,
        )
        step_log().info(
            "%s: result queued for the EMR (HL7 %s, FHIR %s)",
            analysis.analyzer,
            "yes" if queued.hl7_queued else "no",
            "yes" if queued.fhir_queued else "no",
        )
        return queued.message_control_id
