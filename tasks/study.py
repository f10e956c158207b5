"""load_study: the study as closed and routed, as a small context record (I/O)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from integrations.db.worklist import WorklistStore
from integrations.dicom.routing import route_study
from integrations.errors import PacsflowError
from tasks.context import StudyContext
from tasks.runtime import get_runtime


class UnknownStudyError(PacsflowError):
    """process-study was asked for a study the node never received."""

    def __init__(self, message: str, *, advice: str = "") -> None:
        self.advice = advice
        super().__init__(message)


@task(name="load_study", cache_policy=NO_CACHE, persist_result=False)
def load_study(study_key: str) -> StudyContext:
    runtime = get_runtime()
    study = runtime.store.study_by_key(study_key)
    if study is None:
        raise UnknownStudyError(
            f"no study has the key {study_key!r} at this node",
            advice="give the study key (pacsflow find ACCESSION|STUDY_UID|MRN prints it)",
        )
    study_instance_uid = study.study_instance_uid
    route = study.route
    if route is None or not route.is_routed:
        # A run started by hand (UI, CLI) for a study that was unrouted: apply today's rules.
        route = route_study(
            runtime.store.series_of(study_instance_uid),
            runtime.settings.routing.to_rules(),
            runtime.settings.routing.to_overrides(),
        )
    WorklistStore(runtime.database).mark_analysing(study_instance_uid)
    return StudyContext(
        study_instance_uid=study.study_instance_uid,
        generation=study.generation,
        study_key=study.study_key,
        modalities=study.modalities,
        closed_at=study.closed_at,
        analyzers=dict(route.analyzers),
        unrouted_reason=route.unrouted_reason,
    )
