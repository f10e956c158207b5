"""Result objects: the SR first, then the overlays, each built and then C-STOREd (I/O).

The SR carries the findings; it is built (without pixel data) and stored before the overlays
(GSPS, Secondary Capture, SEG, Parametric Map), so the PACS has the report as soon as
possible and an overlay problem never holds it back. The "store" steps only queue the files
in the results outbox; ``pacsflow results-sender`` delivers them (SR first, with retries for
as long as the site allows), so a PACS outage never holds the run or the worker. A result
object's UID names one content: it
follows the inputs (model, findings with their thresholds and tiers, source images, output
profile, prior), so a rerun with the same inputs rebuilds the same objects byte for byte,
and changed inputs give new objects that supersede the old ones (the new SR names its
predecessor). Each overlay carrier is built on its own and never fails the run.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydicom import dcmread

from integrations.db.analyses import AnalysisStore, BuiltObject
from integrations.db.results_outbox import PACS_DESTINATION, Part, QueuedObject, ResultsOutbox
from integrations.db.worklist import WorklistStore
from integrations.dicom.carrier_checks import carrier_obstacles
from integrations.dicom.priors import latest_report
from integrations.dicom.result_inputs import overlay_inputs_digest, report_inputs_digest
from integrations.dicom.result_objects import (
    PredecessorReport,
    ResultKind,
    ResultObject,
    as_prior_comparison,
    build_result_objects,
)
from integrations.dicom.scu import pacs_peer
from integrations.escalation.channels import outbox_priority
from integrations.result_files import load_analysis, save_dataset, study_results_dir
from models.interval_change import PriorComparison, compare_with_prior
from models.results import AnalysisResult, UrgencyTier
from tasks.context import AnalysisRef, PriorRef, ResultObjectRef, StudyContext
from tasks.runtime import get_runtime
from tasks.steps import recorded_step, step_log


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


def _warn(message: str) -> None:
    """A WARNING in the task run's log (the module log outside a run)."""
    step_log().warning(message)


def content_time(context: StudyContext) -> datetime.datetime:
    """The creation time stamped on the result objects: when the analysed study closed.

    Not the wall clock, so that a rerun with the same inputs gives byte-identical objects.
    """
    if context.closed_at is None:
        return datetime.datetime.now().replace(microsecond=0)
    return context.closed_at.astimezone().replace(tzinfo=None, microsecond=0)


def _record(
    context: StudyContext,
    analysis: AnalysisRef,
    objects: list[ResultObject],
    *,
    replaces_kinds: list[str],
    superseded_by: str | None,
    input_digests: dict[str, str],
) -> list[ResultObjectRef]:
    """Write the objects beside the study, record what each UID contains, supersede the rest."""
    runtime = get_runtime()
    folder = study_results_dir(
        runtime.settings.node.results_dir, context.study_instance_uid, context.generation
    )
    built = []
    refs = []
    for item in objects:
        path = save_dataset(folder, item.dataset)
        built.append(
            BuiltObject(
                sop_instance_uid=item.sop_instance_uid,
                series_instance_uid=item.series_instance_uid,
                sop_class_uid=item.sop_class_uid,
                kind=item.kind.value,
                path=str(path),
                content_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                input_digest=input_digests.get(item.kind.value, input_digests["overlays"]),
                status=_status_of(item),
            )
        )
        refs.append(ResultObjectRef(item.sop_instance_uid, item.kind, str(path)))
    AnalysisStore(runtime.database).record_built(
        study_instance_uid=context.study_instance_uid,
        analyzer=analysis.analyzer,
        model_version=analysis.model_version,
        generation=context.generation,
        objects=built,
        replaces_kinds=replaces_kinds,
        superseded_by=superseded_by,
    )
    return refs


def _status_of(item: ResultObject) -> str:
    flag = str(item.dataset.get("PreliminaryFlag", "FINAL") or "FINAL")
    return "preliminary" if flag == "PRELIMINARY" else "final"


def _sources(context: StudyContext, analyzer: str, *, pixels: bool) -> list:
    series = context.analyzers.get(analyzer, ())
    instances = get_runtime().store.instances(context.study_instance_uid, series)
    return [dcmread(instance.path, stop_before_pixels=not pixels) for instance in instances]


def _predecessor(
    store: AnalysisStore, study_instance_uid: str, analyzer: str, report_digest: str
) -> PredecessorReport | None:
    """The SR a new SR of these inputs replaces: the live one, unless it has these inputs
    (then it is rebuilt as it was, naming what it replaced). Only an SR that reached the PACS
    is named: one that was built but never stored is superseded without being referred to."""
    live = store.live_report(study_instance_uid, analyzer)
    if live is not None and live["input_digest"] == report_digest:
        live = store.replaced_report(live["sop_instance_uid"])
    while live is not None and live["stored_at"] is None:
        live = store.replaced_report(live["sop_instance_uid"])
    if live is None:
        return None
    return PredecessorReport(
        sop_instance_uid=live["sop_instance_uid"],
        series_instance_uid=live["series_instance_uid"],
        sop_class_uid=live["sop_class_uid"],
    )


@task(name="build_results", cache_policy=NO_CACHE, persist_result=False)
def build_results(
    context: StudyContext, analysis: AnalysisRef, prior: PriorRef
) -> list[ResultObjectRef]:
    """The SR (TID 1500) of one analysis, with the interval change against the prior.

    Its UIDs follow its inputs; when it replaces another SR of the study and analyzer, it
    names that one as its predecessor and the replaced one is recorded as superseded.
    """
    runtime = get_runtime()
    with recorded_step(f"build_results:{analysis.analyzer}", context) as detail:
        result = load_analysis(Path(analysis.result_path))
        comparison = interval_change(result, prior)
        if comparison is not None:
            AnalysisStore(runtime.database).record_interval_change(
                context.study_instance_uid, analysis.analyzer, comparison.to_json()
            )
            detail["interval_change"] = comparison.summary()
        sources = _sources(context, analysis.analyzer, pixels=False)
        profile = runtime.settings.results
        prior_used = as_prior_comparison(comparison if comparison is not None else prior)
        overlay_digest = overlay_inputs_digest(result, sources, profile)
        report_digest = report_inputs_digest(overlay_digest, prior_used)
        store = AnalysisStore(runtime.database)
        predecessor = _predecessor(
            store, context.study_instance_uid, analysis.analyzer, report_digest
        )
        objects = build_result_objects(
            result,
            sources,
            profile=profile,
            generation=context.generation,
            prior=prior_used,
            now=content_time(context),
            part="report",
            predecessor=predecessor,
        )
        not_produced = carrier_obstacles(result, sources, profile)
        for skipped in not_produced:
            _warn(f"{analysis.analyzer}: {skipped.describe()}")
        detail["not_produced"] = [f"{skip.kind}: {skip.reason}" for skip in not_produced]
        refs = _record(
            context,
            analysis,
            list(objects),
            replaces_kinds=[ResultKind.SR.value],
            superseded_by=objects.sr.sop_instance_uid,
            input_digests={ResultKind.SR.value: report_digest, "overlays": overlay_digest},
        )
        detail["objects"] = [ref.kind for ref in refs]
        detail["sop_instance_uids"] = [ref.sop_instance_uid for ref in refs]
        if predecessor is not None:
            detail["replaces"] = predecessor.sop_instance_uid
        return refs


@task(name="build_overlays", cache_policy=NO_CACHE, persist_result=False)
def build_overlays(context: StudyContext, analysis: AnalysisRef) -> list[ResultObjectRef]:
    """The overlays the site's output profile asks for (GSPS, SC, SEG, Parametric Map).

    Each carrier is built on its own; one that cannot be built is skipped with its reason
    (in the SR already, and here at WARNING). An overlay never fails the run: the SR with
    the findings has been stored before this step.
    """
    runtime = get_runtime()
    with recorded_step(f"build_overlays:{analysis.analyzer}", context) as detail:
        profile = runtime.settings.results
        try:
            result = load_analysis(Path(analysis.result_path))
            sources = _sources(context, analysis.analyzer, pixels=True)
            built = build_result_objects(
                result,
                sources,
                profile=profile,
                generation=context.generation,
                now=content_time(context),
                part="overlays",
            )
            for skipped in built.skipped:
                _warn(f"{analysis.analyzer}: {skipped.describe()}")
            live = AnalysisStore(runtime.database).live_report(
                context.study_instance_uid, analysis.analyzer
            )
            refs = _record(
                context,
                analysis,
                list(built),
                replaces_kinds=[kind.value for kind in ResultKind if kind != ResultKind.SR],
                superseded_by=live["sop_instance_uid"] if live else None,
                input_digests={"overlays": overlay_inputs_digest(result, sources, profile)},
            )
        # The SR with the findings is stored already; overlays are a convenience, and one
        # refused here (e.g. a known UID with other content) is simply not sent.
        except Exception as error:
            _warn(f"{analysis.analyzer}: no overlays: {type(error).__name__}: {error}")
            detail["objects"] = []
            detail["skipped"] = [f"all overlays: {type(error).__name__}: {error}"]
            return []
        detail["objects"] = [ref.kind for ref in refs]
        detail["skipped"] = [f"{skip.kind}: {skip.reason}" for skip in built.skipped]
        return refs


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
            step_log().info("queued %d objects for PACS %s", len(queued), peer)
        return len(queued)


@task(name="store_results", cache_policy=NO_CACHE, persist_result=False)
def store_results(context: StudyContext, objects: list[ResultObjectRef]) -> int:
    """Queue the SRs for the PACS (delivered by the results sender, before the overlays)."""
    return _enqueue("store_results", context, objects, "report")


@task(name="store_overlays", cache_policy=NO_CACHE, persist_result=False)
def store_overlays(context: StudyContext, objects: list[ResultObjectRef]) -> int:
    """Queue the overlays for the PACS (delivered by the results sender, after the SR)."""
    return _enqueue("store_overlays", context, objects, "overlay")
