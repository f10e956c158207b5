"""Result objects: the SR first, then the overlays, each built and then C-STOREd (I/O).

The SR carries the findings; it is built (without pixel data) and stored before the overlays
(GSPS, Secondary Capture, SEG, Parametric Map), so the PACS has the report as soon as
possible and an overlay problem never holds it back. Building is separate from storing, so a
PACS outage retries only the network part. Result objects have deterministic UIDs (study,
analyzer, model version, kind, generation): a rerun replaces instead of duplicating.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydicom import dcmread

from integrations.db.analyses import AnalysisStore
from integrations.dicom.priors import latest_report
from integrations.dicom.result_objects import ResultObject, build_result_objects
from integrations.result_files import load_analysis, save_dataset, study_results_dir
from models.interval_change import PriorComparison, compare_with_prior
from models.results import AnalysisResult
from tasks.context import AnalysisRef, PriorRef, ResultObjectRef, StudyContext
from tasks.runtime import get_runtime
from tasks.steps import peer_task_options, recorded_step


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


def _store(step: str, context: StudyContext, objects: list[ResultObjectRef]) -> int:
    runtime = get_runtime()
    with recorded_step(step, context) as detail:
        if not objects:
            detail["stored"] = 0
            return 0
        runtime.pacs.store_files(
            [Path(ref.path) for ref in objects], study_instance_uid=context.study_instance_uid
        )
        AnalysisStore(runtime.database).mark_stored([ref.sop_instance_uid for ref in objects])
        detail["stored"] = len(objects)
        detail["pacs"] = runtime.pacs.peer.label
        return len(objects)


@task(name="store_results", cache_policy=NO_CACHE, persist_result=False, **peer_task_options())
def store_results(context: StudyContext, objects: list[ResultObjectRef]) -> int:
    """C-STORE the SRs to the PACS (retried on transient failures)."""
    return _store("store_results", context, objects)


@task(name="store_overlays", cache_policy=NO_CACHE, persist_result=False, **peer_task_options())
def store_overlays(context: StudyContext, objects: list[ResultObjectRef]) -> int:
    """C-STORE the overlays to the PACS (retried on transient failures)."""
    return _store("store_overlays", context, objects)
