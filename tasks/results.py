"""Result objects: the SR first, then the overlays, each built and then queued for the PACS (I/O).

The SR carries the findings; it is built (without pixel data) and queued before the overlays
(GSPS, Secondary Capture, SEG, Parametric Map), so the PACS has the report as soon as
possible and an overlay problem never holds it back. The "store" steps only queue the files
in the results outbox; ``pacsflow results-sender`` delivers them (SR first, with retries for
as long as the site allows), so a PACS outage never holds the run or the worker. Result objects have deterministic UIDs (study,
analyzer, model version, kind, generation): a rerun replaces instead of duplicating.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from pydicom import dcmread

from integrations.db.analyses import AnalysisStore
from integrations.db.results_outbox import PACS_DESTINATION, Part, QueuedObject, ResultsOutbox
from integrations.db.worklist import WorklistStore
from integrations.dicom.priors import latest_report
from integrations.dicom.result_objects import ResultObject, build_result_objects
from integrations.dicom.result_sender import pacs_peer
from integrations.escalation.channels import outbox_priority
from integrations.result_files import load_analysis, save_dataset, study_results_dir
from models.interval_change import PriorComparison, compare_with_prior
from models.results import AnalysisResult, UrgencyTier
from tasks.context import AnalysisRef, PriorRef, ResultObjectRef, StudyContext
from tasks.runtime import get_runtime
from tasks.steps import recorded_step

log = logging.getLogger(__name__)


def interval_change(result: AnalysisResult, prior: PriorRef) -> PriorComparison | None:
    """Compare with the newest pacsflow SR of the same analyzer in the moved prior, if any."""
    if not prior.available:
        return None
    instances = get_runtime().store.instances(prior.study_instance_uid)
    reports = [dcmread(instance.path) for instance in instances if instance.modality == "SR"]
    report = latest_report(reports, analyzer=result.analyzer)
    if report is None:
        return None  # the SR names the prior and says it has no earlier AI measurements
    return compare_with_prior(result, report.to_prior_study())


def _record(
    context: StudyContext, analysis: AnalysisRef, objects: list[ResultObject]
) -> list[ResultObjectRef]:
    runtime = get_runtime()
    folder = study_results_dir(
        runtime.settings.node.results_dir, context.study_instance_uid, context.generation
    )
    store = AnalysisStore(runtime.database)
    refs = []
    for item in objects:
        path = save_dataset(folder, item.dataset)
        store.record_result_object(
            sop_instance_uid=str(item.dataset.SOPInstanceUID),
            study_instance_uid=context.study_instance_uid,
            series_instance_uid=str(item.dataset.SeriesInstanceUID),
            sop_class_uid=str(item.dataset.SOPClassUID),
            kind=item.kind,
            analyzer=analysis.analyzer,
            model_version=analysis.model_version,
            generation=context.generation,
            path=str(path),
        )
        refs.append(ResultObjectRef(str(item.dataset.SOPInstanceUID), item.kind, str(path)))
    return refs


def _sources(context: StudyContext, analyzer: str, *, pixels: bool) -> list:
    series = context.analyzers.get(analyzer, ())
    instances = get_runtime().store.instances(context.study_instance_uid, series)
    return [dcmread(instance.path, stop_before_pixels=not pixels) for instance in instances]


@task(name="build_results", cache_policy=NO_CACHE, persist_result=False)
def build_results(
    context: StudyContext, analysis: AnalysisRef, prior: PriorRef
) -> list[ResultObjectRef]:
    """The SR (TID 1500) of one analysis, with the interval change against the prior."""
    runtime = get_runtime()
    with recorded_step(f"build_results:{analysis.analyzer}", context) as detail:
        result = load_analysis(Path(analysis.result_path))
        comparison = interval_change(result, prior)
        if comparison is not None:
            AnalysisStore(runtime.database).record_interval_change(
                context.study_instance_uid, analysis.analyzer, comparison.to_json()
            )
            detail["interval_change"] = comparison.summary()
        objects = build_result_objects(
            result,
            _sources(context, analysis.analyzer, pixels=False),
            settings=runtime.settings,
            generation=context.generation,
            prior=comparison if comparison is not None else prior,
            part="report",
        )
        refs = _record(context, analysis, list(objects))
        detail["objects"] = [ref.kind for ref in refs]
        return refs


@task(name="build_overlays", cache_policy=NO_CACHE, persist_result=False)
def build_overlays(context: StudyContext, analysis: AnalysisRef) -> list[ResultObjectRef]:
    """The overlays the site's output profile asks for (GSPS, SC, SEG, Parametric Map)."""
    runtime = get_runtime()
    with recorded_step(f"build_overlays:{analysis.analyzer}", context) as detail:
        result = load_analysis(Path(analysis.result_path))
        built = build_result_objects(
            result,
            _sources(context, analysis.analyzer, pixels=True),
            settings=runtime.settings,
            generation=context.generation,
            part="overlays",
        )
        refs = _record(context, analysis, list(built))
        detail["objects"] = [ref.kind for ref in refs]
        detail["skipped"] = [f"{skip.kind}: {skip.reason}" for skip in built.skipped]
        return refs


def _run_log() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The task run's log (shown in the Prefect UI); the module's log outside a run."""
    try:
        return get_run_logger()  # type: ignore[return-value]
    except MissingContextError:
        return log


def _enqueue(step: str, context: StudyContext, objects: list[ResultObjectRef], part: Part) -> int:
    """Queue the objects for the PACS in the results outbox; the results sender delivers.

    No peer I/O here: a PACS that is down never holds the run (or the worker)."""
    runtime = get_runtime()
    with recorded_step(step, context) as detail:
        queued = [QueuedObject.from_file(ref.path, ref.kind) for ref in objects]
        # a Critical study's results go to the PACS before routine ones (as to the EMR)
        listed = WorklistStore(runtime.database).get(context.study_instance_uid)
        tier = UrgencyTier(listed["tier"]) if listed and listed["tier"] else None
        added = ResultsOutbox(runtime.database).enqueue(
            destination=PACS_DESTINATION,
            study_instance_uid=context.study_instance_uid,
            generation=context.generation,
            part=part,
            objects=queued,
            give_up_after_hours=runtime.settings.results.give_up_after_hours,
            priority=outbox_priority(tier) if tier else 0,
        )
        peer = pacs_peer(runtime.settings).label
        detail.update(queued=len(queued), pacs=peer, kinds=[ref.kind for ref in objects])
        if added < len(queued):
            detail["already_waiting"] = len(queued) - added
        if queued:
            _run_log().info("queued %d objects for PACS %s", len(queued), peer)
        return len(queued)


@task(name="store_results", cache_policy=NO_CACHE, persist_result=False)
def store_results(context: StudyContext, objects: list[ResultObjectRef]) -> int:
    """Queue the SRs for the PACS (delivered by the results sender, before the overlays)."""
    return _enqueue("store_results", context, objects, "report")


@task(name="store_overlays", cache_policy=NO_CACHE, persist_result=False)
def store_overlays(context: StudyContext, objects: list[ResultObjectRef]) -> int:
    """Queue the overlays for the PACS (delivered by the results sender, after the SR)."""
    return _enqueue("store_overlays", context, objects, "overlay")
