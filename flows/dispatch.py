"""From received instances to flow runs: study close, then one run per study (I/O).

``StudyCloser`` (in the node process) applies the completion policy and routing to open
studies and queues one run per closed, routed study in PostgreSQL, with its dispatch
priority (``integrations.dicom.priority``). ``WarmWorker`` (a long-lived process with the
models loaded) claims queued runs, highest priority first, and executes each as a run of
the ``process-study`` deployment, in-process: the run shows in the Prefect UI under the
deployment (retry and rerun work there), without paying for a new Python process and a model
load per study.

``WorkPoolDispatcher`` is the scale-out route (``[worker] route = "work-pool"``, or
``count = 0``): it hands each queued run to the Prefect work pool that prefect.yaml declares,
as a scheduled run of the same deployment, and plain ``prefect worker start --pool ...``
processes on any host execute it. It records each run's end in the dispatch table.

A worker heartbeats its claim from a thread of its own (a model holding the event loop
cannot stop it); a claim whose heartbeat stops expires after ``[worker] lease_seconds``, and
every worker's heartbeat thread also queues such studies again and sets their Prefect runs
to Crashed. A run the database cut short (a restart) is queued again at once; while the
Prefect API is unreachable the warm worker pages the study's Critical findings without it
and queues the run again for when Prefect is back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg

from integrations.db.patients import PatientStore
from integrations.db.records import DispatchItem
from integrations.db.store import DISPATCH_CHANNEL, StudyStore
from integrations.dicom.assembly import CompletionPolicy, close_reason
from integrations.dicom.header import read_header
from integrations.dicom.priority import StudyPriority, decide_priority, study_images
from integrations.dicom.routing import SeriesInfo, route_study
from integrations.emr.identifiers import MrnRules
from integrations.errors import DatasetError, StoreError
from integrations.settings import Settings

log = logging.getLogger(__name__)


@functools.cache
def named_at_creation() -> Any:
    """process-study for runs the worker created with their name: no rename call per run.

    Runs started elsewhere (the Prefect UI, ``prefect deployment run``) keep the flow's
    ``flow_run_name`` function, which looks the modality, study key and generation up.
    """
    from flows.process_study import process_study

    flow = process_study.with_options()
    flow.flow_run_name = None
    return flow


# How long the worker waits for the Prefect API before it escalates without it (a Critical
# finding pages within 60 s of study close, whatever else is failing), and how long a run
# queued again for that reason waits before it is tried again.
PREFECT_DEADLINE_SECONDS = 10.0
PREFECT_RETRY_SECONDS = 10.0
# Prefect's client retries a failed call 5 times with exponential backoff (about a minute),
# each attempt waiting up to a minute for an answer: a run whose Prefect API died would hold
# its worker for minutes while the queue waits. The worker has its own fallback (escalate
# without Prefect, run queued again), so it retries once, and gives up on a silent API sooner.
PREFECT_CLIENT_RETRIES = 1
PREFECT_REQUEST_TIMEOUT_SECONDS = 20.0


class StudyCloser:
    """Closes studies that went quiet (or hit the ceiling) and queues their runs."""

    def __init__(self, store: StudyStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.policy = CompletionPolicy(
            settings.study.quiet_seconds, settings.study.max_open_seconds
        )
        self.rules = settings.routing.to_rules()
        self.body_part_overrides = settings.routing.to_overrides()
        self.priority_rules = settings.worker.to_priority_rules()
        self.patients = PatientStore(store.database, MrnRules.from_settings(settings.mrn))

    def place_in_queue(
        self, study_instance_uid: str, series: list[SeriesInfo]
    ) -> tuple[StudyPriority, int]:
        """The run's priority (order priority from the images and ADT, then the study-type
        rules) and the study's image count (its lane), from each series' first instance."""
        requested = []
        images = []
        for path, instances in self.store.first_instances(study_instance_uid):
            try:
                header = read_header(Path(path).read_bytes())
            except (OSError, DatasetError) as error:
                log.warning(
                    "study %s: cannot read %s for its priority: %s", study_instance_uid, path, error
                )
                images.append((instances, None))
                continue
            requested.append(header.requested_procedure_priority)
            images.append((instances, header.number_of_frames))
        patient_class = ""
        study = self.store.study(study_instance_uid)
        if study is not None and study.patient_id:
            key = self.patients.rules.dicom_key(study.patient_id, study.issuer_of_patient_id)
            try:
                context = self.patients.context(str(key))
            except StoreError as error:  # a broken merge chain must not stop study close
                log.warning(
                    "study %s: no ADT context for its priority: %s", study_instance_uid, error
                )
                context = None
            patient_class = context.patient_class if context else ""
        priority = decide_priority(
            series,
            self.priority_rules,
            requested_priorities=requested,
            patient_class=patient_class,
        )
        return priority, study_images(images)

    def run_once(self) -> int:
        now, activities = self.store.open_studies()
        closed = 0
        for activity in activities:
            reason = close_reason(activity, self.policy, now)
            if reason is None:
                continue
            series = self.store.series_of(activity.study_instance_uid)
            route = route_study(series, self.rules, self.body_part_overrides)
            priority, images = (
                self.place_in_queue(activity.study_instance_uid, series)
                if route.is_routed
                else (None, None)
            )
            study_key = self.store.close_study(
                activity, route, reason.value, self.policy.quiet_seconds, priority, images
            )
            if study_key is not None:
                closed += 1
                if priority is not None:
                    log.info(
                        "study %s closed (%s), generation %d, %d images, analyzers %s,"
                        " priority %d: %s",
                        study_key,
                        reason.value,
                        activity.generation,
                        images,
                        ", ".join(route.analyzers),
                        priority.value,
                        priority.decided_by,
                    )
                else:
                    log.warning(
                        "study %s closed unrouted: %s",
                        study_key,
                        route.unrouted_reason,
                    )
        return closed

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("study close pass failed; retrying")
                stop.wait(2.0)
            stop.wait(self.settings.study.poll_seconds)


@dataclass
class WorkerStats:
    completed: int = 0
    failed: int = 0


class WarmWorker:
    """Claims queued runs from PostgreSQL and executes them in this process."""

    def __init__(
        self,
        store: StudyStore,
        settings: Settings,
        name: str | None = None,
        *,
        express: bool = False,
    ) -> None:
        self.store = store
        self.settings = settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        # An express worker takes only short studies (the express lane, see
        # integrations.dicom.priority), and leaves runs scheduled from the UI to the others.
        self.max_images = settings.worker.express_max_images if express else None
        self.stats = WorkerStats()
        self._deployment_id: str | None = None
        self._held: int | None = None  # the dispatch id this worker's heartbeat renews
        self._held_lock = threading.Lock()
        # dispatch ids whose Critical findings went out while Prefect was unreachable
        self._escalated_without_prefect: set[int] = set()
        self._prefect_unreachable = False  # told once per outage, not at every pass

    async def deployment_id(self) -> str:
        if self._deployment_id is None:
            from flows.process_study import DEPLOYMENT_NAME, process_study

            deployment = await process_study.ato_deployment(name=DEPLOYMENT_NAME)
            self._deployment_id = str(await deployment.aapply())
        return self._deployment_id

    async def prepare(self) -> None:
        """What the first study would otherwise wait for: the flow and its tasks imported, and
        the process-study deployment looked up (within the Prefect deadline: a worker started
        while the Prefect API is down still starts, and escalates without it)."""
        from integrations.dicom.sr import load_standard_tables

        named_at_creation()
        load_standard_tables()
        try:
            async with asyncio.timeout(PREFECT_DEADLINE_SECONDS):
                await self.deployment_id()
        except Exception as error:
            log.warning(
                "Prefect API unreachable at start (%s); the deployment is looked up again"
                " with the first study",
                _error_words(error),
            )

    async def run_one(self) -> bool:
        """Claim and execute one queued run; False when the queue is empty."""
        from prefect.client.orchestration import get_client
        from prefect.flow_engine import run_flow_async
        from prefect.states import Pending

        item = await asyncio.to_thread(
            self.store.claim, self.name, self.settings.worker.lease_seconds, self.max_images
        )
        if item is None:
            return False
        with self._held_lock:
            self._held = item.id
        database_failures = self.store.database.failures()
        try:
            study = await asyncio.to_thread(self.store.study, item.study_instance_uid)
            if study is None:
                raise LookupError(f"queued study {item.study_instance_uid} has no study row")
            # Prefect sees the opaque study key only: never an accession, MRN or name.
            parameters = {"study_key": study.study_key}
            try:
                async with asyncio.timeout(PREFECT_DEADLINE_SECONDS), get_client() as client:
                    flow_run = await client.create_flow_run_from_deployment(
                        await self.deployment_id(),
                        parameters=parameters,
                        state=Pending(),
                        name=study.run_name,
                    )
            except Exception as unreachable:  # the Prefect API is down or unreachable
                await self.escalate_without_prefect(item, study.study_key, unreachable)
                return True
            self._escalated_without_prefect.discard(item.id)
            await asyncio.to_thread(self.store.attach_flow_run, item.id, str(flow_run.id))
            try:
                state = await run_flow_async(
                    named_at_creation(),
                    flow_run=flow_run,
                    parameters=parameters,
                    return_type="state",
                )
            except (TimeoutError, OSError, httpx.TransportError) as died:
                # The run's own failures come back as a state; this is Prefect failing to take
                # the run's state (its API died during the run). Its steps ran or page now;
                # the run is queued again and its Prefect run set to Crashed once it answers.
                await self.escalate_without_prefect(item, study.study_key, died)
                return True
            succeeded = bool(state.is_completed())
            error = None if succeeded else f"{state.type.value}: {state.message}"
        except Exception as exc:
            log.exception("run for study %s could not be executed", item.study_instance_uid)
            succeeded, error = False, f"{type(exc).__name__}: {exc}"
        finally:
            with self._held_lock:
                self._held = None
        if not succeeded and self.store.database.failures() > database_failures:
            # The database failed during the run (a restart, say): the run is cut short, not
            # wrong. Do it again; the study's steps and result identities make a rerun
            # idempotent. Should the database still be down, the lease expires instead.
            log.warning(
                "study %s: the database failed during the run; queued again (%s)",
                item.study_instance_uid,
                error,
            )
            await asyncio.to_thread(
                self.store.requeue_dispatch,
                item.id,
                error=f"database failed during the run; queued again: {error}",
                worker=self.name,
            )
            return True
        recorded = await asyncio.to_thread(
            self.store.finish_dispatch,
            item.id,
            succeeded=succeeded,
            error=error,
            worker=self.name,
        )
        if not recorded:
            log.warning(
                "study %s: this worker's claim had expired and the study was queued again;"
                " the outcome of this run is not recorded in the queue",
                item.study_instance_uid,
            )
        if succeeded:
            self.stats.completed += 1
        else:
            self.stats.failed += 1
            log.warning("study %s run failed: %s", item.study_instance_uid, error)
        return True

    async def escalate_without_prefect(
        self, item: DispatchItem, study_key: str, error: Exception
    ) -> None:
        """The Prefect API is unreachable: page the study's Critical findings now, without
        Prefect (its first steps, run here as plain functions), and queue the run again for
        when Prefect is back. The full run then repeats them idempotently: the analysis is
        stored over, and an escalation opens once per study and finding."""
        from tasks.escalation import escalate
        from tasks.inference import run_inference
        from tasks.study import load_study

        first = item.id not in self._escalated_without_prefect
        log.warning(
            "study %s: Prefect API unreachable (%s); %srun queued again",
            study_key,
            _error_words(error),
            "escalating without it, " if first else "",
        )
        try:
            if first:

                def urgent_steps() -> None:
                    context = load_study.fn(study_key)
                    for analyzer in context.analyzers:
                        escalate.fn(context, [run_inference.fn(context, analyzer)])

                await asyncio.to_thread(urgent_steps)
                self._escalated_without_prefect.add(item.id)
        finally:
            await asyncio.to_thread(
                self.store.requeue_dispatch,
                item.id,
                error=f"Prefect API unreachable; queued again: {type(error).__name__}",
                worker=self.name,
                retry_after_seconds=PREFECT_RETRY_SECONDS,
            )

    async def run_scheduled_unless_prefect_down(self) -> None:
        """:meth:`run_scheduled`; while the Prefect API cannot be reached, one WARNING line
        per outage (closed studies still run: :meth:`escalate_without_prefect`)."""
        try:
            await self.run_scheduled()
        except (TimeoutError, OSError, httpx.TransportError) as error:
            if not self._prefect_unreachable:
                log.warning(
                    "Prefect API unreachable (%s); runs scheduled from the UI wait until it"
                    " answers",
                    _error_words(error),
                )
            self._prefect_unreachable = True
            return
        if self._prefect_unreachable:
            log.info("Prefect API answers again; runs scheduled from the UI are picked up")
        self._prefect_unreachable = False

    async def run_scheduled(self) -> int:
        """Execute process-study runs scheduled in Prefect (UI "Run" or "Retry"); return how many.

        Claiming follows Prefect's own rule: a run is ours once the server accepts our
        proposal of Pending, so several workers (or a Runner) never execute one run twice.
        """
        from datetime import UTC, datetime

        from prefect.client.orchestration import get_client
        from prefect.exceptions import Abort
        from prefect.flow_engine import run_flow_async
        from prefect.states import Pending
        from prefect.utilities.engine import propose_state

        from flows.process_study import process_study

        executed = 0
        async with get_client() as client:
            async with asyncio.timeout(PREFECT_DEADLINE_SECONDS):  # never hold up the queue
                runs = await client.get_scheduled_flow_runs_for_deployments(
                    [UUID(await self.deployment_id())], scheduled_before=datetime.now(UTC), limit=5
                )
            for flow_run in runs:
                try:
                    state = await propose_state(client, Pending(), flow_run_id=flow_run.id)
                except Abort:
                    continue
                if not state.is_pending():
                    continue
                log.info("executing scheduled run %s (%s)", flow_run.name, flow_run.id)
                final = await run_flow_async(
                    process_study,
                    flow_run=flow_run,
                    parameters=dict(flow_run.parameters),
                    return_type="state",
                )
                executed += 1
                if final.is_completed():
                    self.stats.completed += 1
                else:
                    self.stats.failed += 1
        return executed

    def heartbeat_once(self) -> None:
        """Renew this worker's claim, then recover the claims of workers that stopped."""
        with self._held_lock:
            held = self._held
        if held is not None and not self.store.extend_lease(
            held, self.settings.worker.lease_seconds, self.name
        ):
            log.warning(
                "dispatch %d: the claim expired before its heartbeat (worker too slow?)", held
            )
        requeued = self.store.requeue_expired()
        if requeued:
            log.warning("queued again after their worker stopped: %s", ", ".join(requeued))
        self.crash_lost_runs()

    def crash_lost_runs(self) -> int:
        """Set the Prefect runs of stopped workers to Crashed; return how many were set."""
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        lost = self.store.lost_runs()
        if not lost:
            return 0
        crashed = 0
        with get_client(sync_client=True) as client:
            for run in lost:
                flow_run_id = str(run["flow_run_id"])
                try:
                    state = client.read_flow_run(UUID(flow_run_id)).state
                    if state is None or not state.is_final():
                        message = (
                            f"worker {run['worker'] or '(unknown)'}: {run['reason']}"
                            if run["reason"]
                            else f"worker {run['worker'] or '(unknown)'} stopped (heartbeat lost);"
                            " the study was re-queued"
                        )
                        client.set_flow_run_state(
                            UUID(flow_run_id), Crashed(message=message), force=True
                        )
                        crashed += 1
                except Exception as error:  # recorded; retried at the next heartbeat
                    self.store.mark_run_crashed(flow_run_id, f"{type(error).__name__}: {error}")
                    continue
                self.store.mark_run_crashed(flow_run_id)
        return crashed

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.worker.heartbeat_seconds):
            try:
                self.heartbeat_once()
            except Exception:
                log.exception("worker heartbeat failed; retrying")

    @contextmanager
    def heartbeating(self) -> Iterator[None]:
        """The heartbeat thread, for as long as the block runs."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self._heartbeat, args=(stop,), name=f"heartbeat {self.name}", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(10)

    async def run_forever(self, stop: asyncio.Event, idle_poll_seconds: float = 1.0) -> None:
        """Drain the queue; wake on NOTIFY from the closer, poll as a fallback."""
        from prefect.context import AsyncClientContext, SyncClientContext
        from prefect.settings import (
            PREFECT_API_REQUEST_TIMEOUT,
            PREFECT_CLIENT_MAX_RETRIES,
            PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED,
            temporary_settings,
        )

        from flows.suspension import shared_suspension_observer

        bounded = {
            PREFECT_CLIENT_MAX_RETRIES: PREFECT_CLIENT_RETRIES,
            PREFECT_API_REQUEST_TIMEOUT: PREFECT_REQUEST_TIMEOUT_SECONDS,
        }
        async with AsyncExitStack() as async_stack:
            with temporary_settings(updates=bounded), ExitStack() as stack:
                # One Prefect API client for every task of every run: without it each sync
                # task run builds its own client, and with it a TLS context from the CA
                # bundle (about 50 ms per task here, most of the orchestration overhead of a
                # study). The same for the async calls (the run's creation, its engine, the
                # result storage lookup, the artifact): four clients and TLS contexts a run
                # otherwise. Entering them checks the server's version, which waits for a
                # Prefect that is down: the worker must start and page without it.
                with temporary_settings(
                    updates={PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED: False}
                ):
                    stack.enter_context(SyncClientContext.get_or_create())
                    await async_stack.enter_async_context(AsyncClientContext.get_or_create())
                # one observer of "Suspend" from the UI for every run, not one per run
                stack.enter_context(shared_suspension_observer())
                stack.enter_context(self.heartbeating())
                await self._serve(stop, idle_poll_seconds)

    async def _serve(self, stop: asyncio.Event, idle_poll_seconds: float) -> None:
        while not stop.is_set():
            try:
                await self._serve_listening(stop, idle_poll_seconds)
            except psycopg.OperationalError as error:  # the database restarted, or is down
                log.warning("worker lost its database connection (%s); reconnecting", error)
                await asyncio.sleep(2.0)

    async def _serve_listening(self, stop: asyncio.Event, idle_poll_seconds: float) -> None:
        async with await psycopg.AsyncConnection.connect(
            self.store.database.url, autocommit=True
        ) as listener:
            await listener.execute(f"LISTEN {DISPATCH_CHANNEL}")
            while not stop.is_set():
                try:
                    await asyncio.to_thread(self.store.requeue_expired)
                    while not stop.is_set() and await self.run_one():
                        pass
                    if not stop.is_set() and self.max_images is None:
                        await self.run_scheduled_unless_prefect_down()
                except Exception:
                    log.exception("worker pass failed; retrying")
                    await asyncio.sleep(2.0)
                async for _ in listener.notifies(timeout=idle_poll_seconds, stop_after=1):
                    pass


def _error_words(error: Exception) -> str:
    """``TimeoutError`` rather than ``TimeoutError: `` for an exception with no message."""
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


CODE_ROOT = Path(__file__).resolve().parents[1]  # the folder flows/ and tasks/ live in
_TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def work_pool_run_parameters(store: StudyStore, item: DispatchItem) -> dict[str, Any]:
    """The parameters of process-study for a queued row (the same the warm workers pass):
    the opaque study key, never a patient identifier."""
    study = store.study(item.study_instance_uid)
    if study is None:
        raise LookupError(f"queued study {item.study_instance_uid} has no study row")
    return {"study_key": study.study_key}


def work_pool_run_name(item: DispatchItem) -> str:
    """PHI-free: the dispatch row and generation, never the accession or the patient."""
    return f"study-d{item.id}-g{item.generation}"


class WorkPoolDispatcher:
    """Hands queued runs to a Prefect work pool, once each, and records how they ended."""

    def __init__(self, store: StudyStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.pool = settings.worker.work_pool
        self.queue = settings.worker.work_queue
        # The dispatch table's worker column for rows that belong to the pool.
        self.pool_worker = f"work-pool:{self.pool}"
        self._deployment_id: UUID | None = None

    def ensure_deployment(self, client: Any) -> UUID:
        """The process-study deployment on the pool: created (with a process pool) when
        missing or on another pool; kept as it is when ``prefect deploy`` already put it there.
        """
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectNotFound
        from prefect.utilities.callables import parameter_schema

        from flows.process_study import DEPLOYMENT_NAME, FLOW_NAME, process_study

        if self._deployment_id is not None:
            return self._deployment_id
        try:
            client.read_work_pool(self.pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=self.pool, type="process"))
            log.info("created Prefect work pool %s (process)", self.pool)
        try:
            existing = client.read_deployment_by_name(f"{FLOW_NAME}/{DEPLOYMENT_NAME}")
        except ObjectNotFound:
            existing = None
        if existing is not None and existing.work_pool_name == self.pool and existing.pull_steps:
            self._deployment_id = existing.id
            return existing.id
        from deployments.catalog import PROCESS_STUDY, spec_for

        self._deployment_id = client.create_deployment(  # an upsert by flow and name
            flow_id=client.create_flow_from_name(FLOW_NAME),
            name=DEPLOYMENT_NAME,
            description=spec_for(PROCESS_STUDY).description,
            work_pool_name=self.pool,
            work_queue_name=self.queue,
            entrypoint="flows/process_study.py:process_study",
            pull_steps=[
                {"prefect.deployments.steps.set_working_directory": {"directory": str(CODE_ROOT)}}
            ],
            parameter_openapi_schema=parameter_schema(process_study).model_dump(),
            enforce_parameter_schema=True,
        )
        log.info("process-study deployed to work pool %s, queue %s", self.pool, self.queue)
        return self._deployment_id

    def run_once(self, client: Any) -> tuple[int, int]:
        """Hand every queued run to the pool, then record the runs that ended; return both
        counts."""
        deployment_id = self.ensure_deployment(client)

        def schedule(item: DispatchItem) -> str:
            flow_run = client.create_flow_run_from_deployment(
                deployment_id,
                parameters=work_pool_run_parameters(self.store, item),
                name=work_pool_run_name(item),
                idempotency_key=f"pacsflow-dispatch-{item.id}",
                work_queue_name=self.queue,
            )
            return str(flow_run.id)

        handed = 0
        while (item := self.store.hand_to_work_pool(self.pool_worker, schedule)) is not None:
            handed += 1
            log.info("study run d%d handed to work pool %s", item.id, self.pool)
        return handed, self.record_ended(client)

    def record_ended(self, client: Any) -> int:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        active = self.store.work_pool_runs(self.pool_worker)
        if not active:
            return 0
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[UUID(run_id) for _, run_id in active])
            )
        )
        states = {str(run.id): run.state for run in runs}
        ended = 0
        for dispatch_id, run_id in active:
            state = states.get(run_id)
            if state is None:  # deleted in Prefect: nobody will run it
                self.store.finish_dispatch(
                    dispatch_id, succeeded=False, error="flow run deleted", worker=self.pool_worker
                )
            elif state.type.value in _TERMINAL:
                succeeded = state.type.value == "COMPLETED"
                error = None if succeeded else f"{state.type.value}: {state.message}"
                self.store.finish_dispatch(
                    dispatch_id, succeeded=succeeded, error=error, worker=self.pool_worker
                )
                if not succeeded:
                    log.warning("study run d%d ended %s", dispatch_id, state.type.value)
            else:
                continue
            ended += 1
        return ended

    def run_forever(self, stop: threading.Event) -> None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            while not stop.is_set():
                try:
                    self.run_once(client)
                except Exception:
                    log.exception("work-pool dispatch pass failed; retrying")
                    self._deployment_id = None
                    stop.wait(2.0)
                stop.wait(self.settings.worker.dispatch_poll_seconds)
