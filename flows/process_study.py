"""process-study: one Prefect flow run per closed study; the only place that sets order (I/O).

    load_study ─▶ fetch_priors (concurrently) ───────────────────────────────────┐
              └▶ for each routed analyzer: run_inference ─▶ escalate (at once) ─┴▶ build_results
                 ─▶ store_results (queued) ─▶ update_worklist ─▶ send_oru

Escalation of a Critical finding never waits for priors, result objects or the EMR; the SR
and the EMR message never wait for the overlays. Every
step records its outcome per study (``study_steps``); the Prefect run history is the audit
trail, and a failed run is rerun from the Prefect UI or with ``pacsflow rerun``.

Prefect sees no patient data: the run's only parameter is the opaque study key (``S`` and
12 characters, ``studies.study_key``; ``pacsflow find ACCESSION|STUDY_UID|MRN`` gives it), the
run is named ``CR S7K2M9QX4PAB gen 1``, each run publishes a PHI-free summary artifact, and a
failed run's state message says what failed and what to check.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect import runtime as prefect_runtime
from prefect.states import Failed

from integrations.errors import PacsflowError
from integrations.operator_report import failure_message
from tasks.emr import send_oru
from tasks.escalation import escalate
from tasks.inference import run_inference
from tasks.operator_view import publish_run_summary
from tasks.priors import fetch_priors
from tasks.results import build_overlays, build_results, store_overlays, store_results
from tasks.runtime import get_runtime
from tasks.study import load_study
from tasks.worklist import update_worklist

FLOW_NAME = "process-study"
DEPLOYMENT_NAME = "process-study"


def run_name() -> str:
    """``CR S7K2M9QX4PAB gen 1`` for runs started from the UI: no patient data."""
    key = str(prefect_runtime.flow_run.parameters.get("study_key", ""))
    try:
        study = get_runtime().store.study_by_key(key)
    except Exception:
        study = None
    # never echo what was typed: someone may have pasted an accession number as the key
    return study.run_name if study else "unknown study key"


@flow(name=FLOW_NAME, flow_run_name=run_name, persist_result=False, log_prints=False)
async def process_study(study_key: str) -> Any:
    """Analyse one closed study and deliver its results to the PACS, worklist and EMR.

    Args:
        study_key: the study's opaque pacsflow key, e.g. S7K2M9QX4PAB0 (`pacsflow find
            ACCESSION|STUDY_UID|MRN` prints it). Never an accession number or MRN.
    """
    logger = get_run_logger()
    runtime = get_runtime()
    store = runtime.store
    try:
        context = load_study(study_key)
    except PacsflowError as error:
        message = failure_message("load_study", error)
        logger.error(message)
        return Failed(message=message)
    if not context.analyzers:
        store.record_step(
            context.study_instance_uid,
            context.generation,
            "route",
            "skipped",
            {"reason": context.unrouted_reason},
        )
        logger.warning("not routed to any analyzer: %s", context.unrouted_reason)
        await publish_run_summary(runtime, context, outcome="unrouted")
        return {"study_key": study_key, "state": "unrouted", "reason": context.unrouted_reason}
    logger.info("processing: %s", ", ".join(context.analyzers), extra={"state_change": True})
    step = "fetch_priors"
    prior = None
    try:
        prior_future = fetch_priors.submit(context)
        analyses = []
        escalated = 0
        for analyzer in context.analyzers:
            step = f"run_inference:{analyzer}"
            analysis = run_inference(context, analyzer)
            analyses.append(analysis)
            # each analyzer's Critical findings go out before the next analyzer runs
            step = "escalate"
            escalated += escalate(context, [analysis])
        step = "fetch_priors"
        prior = prior_future.result()
        step = "build_results"
        reports = [ref for analysis in analyses for ref in build_results(context, analysis, prior)]
        # queued for the PACS, not sent: the results sender delivers and marks the worklist
        step = "store_results"
        queued = store_results(context, reports)
        step = "update_worklist"
        tier = update_worklist(context, analyses, results_stored=False)
        step = "send_oru"
        messages = [send_oru(context, analysis) for analysis in analyses]
        step = "build_overlays"
        overlays = [ref for analysis in analyses for ref in build_overlays(context, analysis)]
        step = "store_overlays"
        queued += store_overlays(context, overlays)
    except Exception as error:
        store.set_study_state(context.study_instance_uid, context.generation, "failed")
        message = failure_message(step, error)
        logger.error(message)
        await publish_run_summary(runtime, context, outcome="failed", prior=prior, failure=message)
        return Failed(message=message)
    except BaseException:
        store.set_study_state(context.study_instance_uid, context.generation, "failed")
        raise
    store.set_study_state(context.study_instance_uid, context.generation, "done")
    await publish_run_summary(runtime, context, outcome="done", tier=tier, prior=prior)
    logger.info(
        "done: tier %s, %d result objects queued for the PACS, %d EMR messages queued,"
        " %d escalations",
        tier,
        queued,
        len(messages),
        escalated,
        extra={"state_change": True},
    )
    return {
        "study_key": study_key,
        "generation": context.generation,
        "state": "done",
        "tier": tier,
        "analyzers": [analysis.analyzer for analysis in analyses],
        "escalations_opened": escalated,
        "result_objects_queued": queued,
        "hl7_messages": len(messages),
        "prior": "compared" if prior.available else prior.reason,
    }
