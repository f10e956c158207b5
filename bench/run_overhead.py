"""Per-run cost of one chest X-ray study on the warm path, split into its parts (I/O).

Usage: ``python -m bench.run_overhead [--studies 20] [--models var/models] [--profile FILE]``.

Starts, in this process, what a site runs for one study: the DICOM node and the study closer,
one warm worker (``WarmWorker.run_forever`` in a thread, as ``pacsflow worker`` runs it), with
PostgreSQL (a scratch database), a Prefect server and Orthanc (the PACS the prior search asks)
beside it. It sends N chest X-ray studies one at a time (the next once the previous run has
ended; the first warms caches and is not counted) and reads back, per run, from the dispatch
row, the study's steps and the Prefect API:

    claim -> flow run created -> Running (engine) -> first task -> ... each task ... -> last
    task -> artifact -> final state -> dispatch finished

with p50/p95 of each part, each task's time as Prefect records it (its run's start to end)
and as the step records it (``study_steps``), and the Prefect API requests per run counted
at the HTTP client of this process (method and route), with the time spent waiting for them.
``--profile FILE`` writes a cProfile of the worker thread (``python -m pstats FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import cProfile
import os
import re
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from bench.common import percentile, scratch_database
from deployments.orthanc import OrthancConfig, OrthancProcess, free_port

NODE_AE = "PACSFLOW"
PACS_AE = "ORTHANC"
CALLER_AE = "BENCH"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--models", default="var/models")
    parser.add_argument("--profile", default="", help="write a cProfile of the worker thread")
    args = parser.parse_args()

    from models.demo import ensure_demo_packages

    models_dir = Path(args.models).resolve()
    ensure_demo_packages(models_dir, ["chest-xray"])
    node_port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="pacsflow-overhead-") as scratch,
        scratch_database() as database_url,
        prefect_server(Path(scratch) / "prefect") as api_url,
        orthanc(Path(scratch) / "orthanc", node_port) as pacs_port,
    ):
        runs = measure(Path(scratch), database_url, api_url, node_port, pacs_port, models_dir, args)
    report(runs, args.studies)


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """A Prefect server of its own, started as ``pacsflow serve`` starts it, with the
    worker's environment under ``pacsflow serve``."""
    from deployments.prefect_urls import client_environment
    from tests.fix_prefect import prefect_server as started

    with started(home) as url:
        os.environ.update(client_environment(started_server=True))
        os.environ["PREFECT_HOME"] = str(home)
        yield url


@contextmanager
def orthanc(storage: Path, node_port: int) -> Iterator[int]:
    """Orthanc as the PACS, knowing the node (the prior search's C-FIND is answered)."""
    from deployments.orthanc import Modality

    port = free_port()
    process = OrthancProcess(
        OrthancConfig(
            storage_dir=storage,
            ae_title=PACS_AE,
            dicom_port=port,
            http_port=free_port(),
            modalities=[Modality("pacsflow", NODE_AE, "127.0.0.1", node_port)],
        )
    )
    process.start()
    try:
        yield port
    finally:
        process.stop()


class RequestLog:
    """Every HTTP request of this process to the Prefect API: route and seconds waited."""

    def __init__(self, api_url: str) -> None:
        self.prefix = httpx.URL(api_url).path.rstrip("/")
        self.lock = threading.Lock()
        self.entries: list[tuple[float, str, float]] = []  # (started, "POST /flow_runs/", s)

    def route(self, request: httpx.Request, answer: str) -> str:
        """``POST /flow_runs/{id}/set_state``, with the status when it is not a success."""
        path = request.url.path.removeprefix(self.prefix)
        path = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "{id}", path)
        failed = "" if answer.startswith("2") else f" -> {answer}"
        return f"{request.method} {path}{failed}"

    def install(self) -> None:
        log = self
        async_send = httpx.AsyncClient.send
        sync_send = httpx.Client.send

        async def timed_async(client: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> Any:
            started, answer = time.time(), "no answer"
            try:
                response = await async_send(client, request, **kw)
                answer = str(response.status_code)
                return response
            finally:
                log.add(started, log.route(request, answer), time.time() - started)

        def timed_sync(client: httpx.Client, request: httpx.Request, **kw: Any) -> Any:
            started, answer = time.time(), "no answer"
            try:
                response = sync_send(client, request, **kw)
                answer = str(response.status_code)
                return response
            finally:
                log.add(started, log.route(request, answer), time.time() - started)

        httpx.AsyncClient.send = timed_async  # type: ignore[method-assign,assignment]
        httpx.Client.send = timed_sync  # type: ignore[method-assign,assignment]

    def add(self, started: float, route: str, seconds: float) -> None:
        if threading.current_thread() is threading.main_thread():
            return  # the bench's own reads of the timeline
        with self.lock:
            self.entries.append((started, route, seconds))

    def between(self, start: float, end: float) -> list[tuple[float, str, float]]:
        with self.lock:
            return [entry for entry in self.entries if start <= entry[0] <= end]


def measure(
    work: Path,
    database_url: str,
    api_url: str,
    node_port: int,
    pacs_port: int,
    models_dir: Path,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    from flows.dispatch import StudyCloser, WarmWorker
    from integrations.db.connection import open_database
    from integrations.db.store import StudyStore
    from integrations.dicom.scp import DicomNode
    from integrations.dicom.spool import Spool
    from integrations.settings import load_settings
    from models.phantoms.chest import chest_xray_study
    from tasks.runtime import Runtime, install_runtime, reset_runtime

    requests = RequestLog(api_url)
    requests.install()
    settings = load_settings(
        None,
        search=False,
        node={
            "ae_title": NODE_AE,
            "port": node_port,
            "storage_dir": str(work / "storage"),
            "allowed_callers": [CALLER_AE],
        },
        pacs={"ae_title": PACS_AE, "host": "127.0.0.1", "port": pacs_port},
        database={"url": database_url},
        study={"quiet_seconds": 0.3, "poll_seconds": 0.05},
        models={
            "dir": str(models_dir),
            "device": "cpu",
            "build_demo_if_missing": False,
            "allow_non_clinical": True,  # the demo package
        },
        routing={
            "rules": [
                {
                    "name": "chest",
                    "modality": ["DX", "CR"],
                    "body_part": ["CHEST"],
                    "analyzers": ["chest-xray"],
                }
            ]
        },
    )
    database = open_database(settings)
    store = StudyStore(database)
    node = DicomNode(
        settings.node, store, Spool(settings.node.spool_dir, fsync=settings.node.fsync), None
    )
    node.start()
    stop_closer = threading.Event()
    closer = threading.Thread(
        target=StudyCloser(store, settings).run_forever, args=(stop_closer,), daemon=True
    )
    closer.start()
    runtime = Runtime(settings=settings, database=open_database(settings))
    install_runtime(runtime)
    worker = WarmWorker(runtime.store, settings, name="bench-worker")
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    profiler = cProfile.Profile() if args.profile else None
    profiling = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(worker.prepare())

        async def forever() -> None:
            await worker.run_forever(stop, idle_poll_seconds=0.3)

        if profiler is None:
            loop.run_until_complete(forever())
            return

        # profile only while measured runs go (the first, warming run is not counted)
        async def toggle() -> None:
            while not stop.is_set():
                if profiling.is_set() and profiler is not None:
                    profiler.enable()
                    return
                await asyncio.sleep(0.01)

        toggling = loop.create_task(toggle())
        loop.run_until_complete(forever())
        profiler.disable()
        toggling.cancel()

    thread = threading.Thread(target=contextvars.copy_context().run, args=(serve,), daemon=True)
    thread.start()
    runs: list[dict[str, Any]] = []
    try:
        for index in range(args.studies + 1):
            if index == 1:
                profiling.set()
            findings = (
                ["Pneumothorax"] if index % 3 == 0 else (["Effusion"] if index % 3 == 1 else [])
            )
            study = chest_xray_study(7000 + index, findings, accession_number=f"OVH{index:04d}")
            sent_at = time.time()
            send(node_port, study.datasets)
            dispatch = wait_for_run(database, study.study_instance_uid)
            if index == 0:
                continue
            runs.append(timeline(database, api_url, dispatch, requests, sent_at))
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        reset_runtime()
        stop_closer.set()
        closer.join(10)
        node.stop()
        database.close()
        if profiler is not None:
            profiler.dump_stats(args.profile)
    return runs


def send(port: int, datasets: list[Any]) -> None:
    from pynetdicom import AE

    ae = AE(ae_title=CALLER_AE)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    if not association.is_established:
        raise RuntimeError("the node refused the association")
    try:
        for ds in datasets:
            status = association.send_c_store(ds)
            if getattr(status, "Status", None) != 0:
                raise RuntimeError(f"C-STORE failed: {status}")
    finally:
        association.release()


def wait_for_run(database: Any, study_uid: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.connection() as conn:
            row = conn.execute(
                "SELECT id, state, started_at, finished_at, flow_run_id, study_instance_uid"
                " FROM dispatch WHERE study_instance_uid = %s ORDER BY id DESC LIMIT 1",
                (study_uid,),
            ).fetchone()
        if row and row["state"] in ("completed", "failed"):
            if row["state"] == "failed":
                raise RuntimeError(f"the run of {study_uid} failed")
            return dict(row)
        time.sleep(0.02)
    raise RuntimeError(f"no finished run for {study_uid} after {timeout} s")


def timeline(
    database: Any, api_url: str, dispatch: dict[str, Any], requests: RequestLog, sent_at: float
) -> dict[str, Any]:
    """One run's moments, in seconds since its claim."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_run_id = UUID(str(dispatch["flow_run_id"]))
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        states = client.read_flow_run_states(flow_run_id)
        runs_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        task_runs = client.read_task_runs(flow_run_filter=runs_filter)
        artifacts = client.read_artifacts(flow_run_filter=runs_filter)
    with database.connection() as conn:
        steps = conn.execute(
            "SELECT step, started_at, finished_at FROM study_steps"
            " WHERE study_instance_uid = %s AND started_at IS NOT NULL ORDER BY started_at",
            (dispatch["study_instance_uid"],),
        ).fetchall()
    claim = dispatch["started_at"].timestamp()
    finished = dispatch["finished_at"].timestamp()

    def since(moment: Any) -> float:
        return moment.timestamp() - claim

    running = next(s for s in states if s.type.value == "RUNNING")
    final = next(s for s in reversed(states) if s.is_final())
    # (start, end, task name) of each task run that ran
    tasks: list[tuple[Any, Any, str]] = sorted(
        (t.start_time, t.end_time, t.task_key.rsplit("-", 1)[0].split(".")[-1] or t.name)
        for t in task_runs
        if t.start_time is not None and t.end_time is not None
    )
    moments = {
        "flow run created": since(flow_run.created),
        "Running": since(running.timestamp),
        "first task start": since(tasks[0][0]),
        "last task end": since(max(end for _, end, _ in tasks)),
        "artifact created": since(min(a.created for a in artifacts if a.created))
        if artifacts
        else None,
        "final state": since(final.timestamp),
        "dispatch finished": finished - claim,
    }
    task_seconds: dict[str, float] = defaultdict(float)
    for start, end, name in tasks:
        task_seconds[name] += (end - start).total_seconds()
    step_seconds: dict[str, float] = defaultdict(float)
    for step in steps:
        step_seconds[step["step"].split(":")[0]] += (
            step["finished_at"] - step["started_at"]
        ).total_seconds()
    calls = requests.between(claim - 0.05, finished + 0.05)
    return {
        "moments": moments,
        "tasks": dict(task_seconds),
        "steps": dict(step_seconds),
        "task_runs": len(task_runs),
        "requests": Counter(route for _, route, _ in calls),
        "request_seconds": sum(seconds for _, _, seconds in calls),
        "queue_wait": claim - sent_at,
        "total": finished - claim,
    }


def stats(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"p50 {statistics.median(values):6.3f}  p95 {percentile(values, 0.95):6.3f}"
        f"  max {max(values):6.3f}"
    )


def report(runs: list[dict[str, Any]], studies: int) -> None:
    print(f"{studies} chest X-ray studies, one at a time, warm worker in this process, CPU")
    print(f"claim -> dispatch finished (whole run)      {stats([r['total'] for r in runs])}")
    print("moments since the claim (s):")
    names = list(runs[0]["moments"])
    for name in names:
        values = [r["moments"][name] for r in runs if r["moments"][name] is not None]
        print(f"  {name:<40} {stats(values)}")
    print("parts (s):")
    previous = None
    for name in names:
        if previous is not None:
            values = [
                r["moments"][name] - r["moments"][previous]
                for r in runs
                if r["moments"][name] is not None and r["moments"][previous] is not None
            ]
            print(f"  {previous + ' -> ' + name:<40} {stats(values)}")
        previous = name
    print("tasks (s, Prefect start -> end, summed over a run's task runs of that name):")
    for name in sorted({name for r in runs for name in r["tasks"]}):
        print(f"  {name:<40} {stats([r['tasks'].get(name, 0.0) for r in runs])}")
    print("steps (s, study_steps started -> finished):")
    for name in sorted({name for r in runs for name in r["steps"]}):
        print(f"  {name:<40} {stats([r['steps'].get(name, 0.0) for r in runs])}")
    outside = [
        r["total"] - sum(v for k, v in r["steps"].items() if k != "fetch_priors") for r in runs
    ]
    print(f"outside the steps (whole run - steps but fetch_priors) {stats(outside)}")
    print(f"task runs per run: {statistics.median([r['task_runs'] for r in runs])}")
    total_requests = [sum(r["requests"].values()) for r in runs]
    print(
        f"Prefect API requests per run: {stats([float(n) for n in total_requests])};"
        f" seconds waiting for them {stats([r['request_seconds'] for r in runs])}"
    )
    routes: Counter[str] = Counter()
    for r in runs:
        routes.update(r["requests"])
    for route, count in routes.most_common():
        print(f"  {count / len(runs):6.1f}  {route}")


if __name__ == "__main__":
    main()
