"""process-study: one Prefect flow run per closed study; the only place that sets order (I/O).

    load_study ─▶ fetch_priors (concurrently) ───────────────────────────────────┐
              └▶ for each routed analyzer: run_inference ─▶ escalate (at once) ─┴▶ build_results
                 ─▶ store_results (queued) ─▶ update_worklist ─▶ send_oru

Escalation of a Critical finding never waits for priors, result objects or the EMR; the SR
and the EMR message never wait for the overlays. Every
step records its outcome per study (``study_steps``); the Prefect run history is the audit
trail, and a failed run is rerun from the Prefect UI or with ``pacsflow rerun``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect import runtime as prefect_runtime

from tasks.emr import send_oru
from tasks.escalation import escalate
from tasks.inference import run_inference
from tasks.priors import fetch_priors
from tasks.results import build_overlays, build_results, store_overlays, store_results
from tasks.runtime import get_runtime
from tasks.study import load_study
from tasks.worklist import update_worklist

FLOW_NAME = "process-study"
DEPLOYMENT_NAME = "process-study"


def run_name() -> str:
    """Readable and PHI-free: accession (or Study Instance UID) and modalities."""
    uid = str(prefect_runtime.flow_run.parameters.get("study_instance_uid", ""))
    try:
        study = get_runtime().store.study(uid)
    except Exception:
        study = None
    return study.display_name if study else uid


@flow(name=FLOW_NAME, flow_run_name=run_name, persist_result=False, log_prints=False)
async def process_study(study_instance_uid: str) -> dict[str, Any]:
    """Analyse one closed study and deliver its results to the PACS, worklist and EMR."""
    runtime = get_runtime()
    store = runtime.store
    context = load_study(study_instance_uid)
    if not context.analyzers:
        store.record_step(
            study_instance_uid,
            context.generation,
            "route",
            "skipped",
            {"reason": context.unrouted_reason},
        )
        return {
            "study_instance_uid": study_instance_uid,
            "state": "unrouted",
            "reason": context.unrouted_reason,
        }
    try:
        prior_future = fetch_priors.submit(context)
        analyses = []
        escalated = 0
        for analyzer in context.analyzers:
            analysis = run_inference(context, analyzer)
            analyses.append(analysis)
            # each analyzer's Critical findings go out before the next analyzer runs
            escalated += escalate(context, [analysis])
        prior = prior_future.result()
        reports = [ref for analysis in analyses for ref in build_results(context, analysis, prior)]
        # queued for the PACS, not sent: the results sender delivers and marks the worklist
        queued = store_results(context, reports)
        tier = update_worklist(context, analyses, results_stored=False)
        messages = [send_oru(context, analysis) for analysis in analyses]
        overlays = [ref for analysis in analyses for ref in build_overlays(context, analysis)]
        queued += store_overlays(context, overlays)
    except BaseException:
        store.set_study_state(study_instance_uid, context.generation, "failed")
        raise
    store.set_study_state(study_instance_uid, context.generation, "done")
    return {
        "study_instance_uid": study_instance_uid,
        "generation": context.generation,
        "state": "done",
        "tier": tier,
        "analyzers": [analysis.analyzer for analysis in analyses],
        "escalations_opened": escalated,
        "result_objects_queued": queued,
        "hl7_messages": len(messages),
        "prior": prior.study_instance_uid if prior.available else prior.reason,
    }
