"""Study close → first notification received, p50/p95 over Critical studies (I/O).

Two measurements, in one run, against real local peers (PostgreSQL, a recording webhook and
SMTP server, a Prefect server):

``flow`` (default)
    Each study is recorded and closed in PostgreSQL (the database clock starts here, exactly
    as the study closer does), then a Prefect flow run executes the ``escalate`` task on a
    Critical analysis, as ``process-study`` does right after inference. The time is until the
    recording webhook received the signed POST. It excludes the dispatch hop and inference.
``direct``
    The reference, measured in the same run: the same escalation engine called without Prefect.
    ``flow / direct`` is what the orchestration adds.
``chain`` (``--chain``, needs the chest X-ray analyzer of issue 3)
    The whole path: pynetdicom C-STORE to the node → quiet period → study close → warm worker →
    process-study (run_inference on CPU, escalate) → webhook received. The quiet period is
    before study close and so not part of the number.

Usage: ``python bench/escalation/run.py [--studies 20] [--chain]``; target p95 <= 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from integrations.db.connection import open_database  # noqa: E402
from integrations.db.schema import migrate  # noqa: E402
from integrations.settings import Settings, load_settings  # noqa: E402
from tests.fix_notify import RecordingHttpServer, RecordingSmtpServer  # noqa: E402

TARGET_P95_SECONDS = 10.0
SYSTEM_SERVER = os.environ.get(
    "PACSFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def temporary_database() -> Iterator[str]:
    name = f"pacsflow_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SYSTEM_SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = SYSTEM_SERVER.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        yield url
    finally:
        with psycopg.connect(SYSTEM_SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def site_settings(
    url: str, storage: Path, http: RecordingHttpServer, smtp: RecordingSmtpServer, **extra: Any
) -> Settings:
    return load_settings(
        None,
        search=False,
        database={"url": url},
        node={"storage_dir": str(storage), **extra.pop("node", {})},
        escalation={
            "people": {"surg1": {"name": "Dr Surgeon", "email": "surg1@bench.test"}},
            "teams": {
                "surgery": {
                    "channels": ["webhook", "email"],
                    "delivery": "all",
                    "on_call": [{"person": "surg1"}],
                    "webhook_url": http.url("/hooks/surgery"),
                }
            },
            "rules": extra.pop("escalation_rules", []),
            "webhook_secret": "bench-secret",
            "smtp_host": smtp.host,
            "smtp_port": smtp.port,
        },
        **extra,
    )


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    cuts = (
        statistics.quantiles(ordered, n=100, method="inclusive")
        if len(ordered) > 1
        else ordered * 99
    )
    return {
        "n": len(ordered),
        "p50": statistics.median(ordered),
        "p95": cuts[94],
        "max": ordered[-1],
    }


def wait_for_hook(http: RecordingHttpServer, study_uid: str, timeout: float = 120.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request in http.received("/hooks/surgery"):
            if request.json()["study"]["study_instance_uid"] == study_uid:
                return request.received_at
        time.sleep(0.005)
    raise TimeoutError(f"no notification for {study_uid}")


def bench_escalation(count: int) -> dict[str, dict[str, float]]:
    """``flow`` and ``direct`` modes (see the module docstring)."""
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from integrations.escalation.engine import CriticalFindingInput, EscalationEngine
    from tasks.escalation import escalate
    from tasks.runtime import Runtime, install_runtime, reset_runtime
    from tests.integration.escalation.conftest import Site

    http, smtp = RecordingHttpServer(), RecordingSmtpServer()
    http.start()
    smtp.start()
    results: dict[str, list[float]] = {"flow": [], "direct": []}
    try:
        with temporary_database() as url, tempfile.TemporaryDirectory() as folder:
            settings = site_settings(url, Path(folder) / "storage", http, smtp)
            runtime = Runtime(settings=settings, database=open_database(settings))
            install_runtime(runtime)
            site = Site(settings, runtime, http, smtp, Path(folder))
            engine = EscalationEngine(settings, runtime.database, name="bench-direct")

            @flow(name="bench-escalate", persist_result=False)
            async def escalate_in_flow(context: Any, analysis: Any) -> int:
                return escalate(context, [analysis])

            with prefect_test_harness(server_startup_timeout=120):
                for index in range(count + 1):  # the first run warms up Prefect
                    context = site.closed_study(f"bench-flow-{index}")
                    analysis = site.analysis(context, [("Tension Pneumothorax", 0.93)])
                    asyncio.run(escalate_in_flow(context, analysis))
                    received = wait_for_hook(http, context.study_instance_uid)
                    if index:
                        results["flow"].append(received - context.closed_at.timestamp())
            for index in range(count):
                context = site.closed_study(f"bench-direct-{index}")
                engine.open_and_notify(
                    study_instance_uid=context.study_instance_uid,
                    generation=context.generation,
                    study_closed_at=context.closed_at,
                    findings=[CriticalFindingInput("bench", "Tension Pneumothorax", 0.93)],
                )
                received = wait_for_hook(http, context.study_instance_uid)
                results["direct"].append(received - context.closed_at.timestamp())
            reset_runtime()
    finally:
        http.stop()
        smtp.stop()
    return {mode: percentiles(values) for mode, values in results.items()}


def bench_chain(count: int) -> dict[str, dict[str, float]]:
    """``chain`` mode: C-STORE → node → close → warm worker → process-study → webhook."""
    from prefect.testing.utilities import prefect_test_harness
    from pynetdicom import AE
    from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation  # type: ignore[attr-defined]

    from deployments.commands.worker import prepare_models
    from deployments.orthanc import free_port
    from tests.dicom_samples import make_instance
    from tests.site import running_node, running_worker

    http, smtp = RecordingHttpServer(), RecordingSmtpServer()
    http.start()
    smtp.start()
    latencies: list[float] = []
    inference: list[float] = []
    try:
        with temporary_database() as url, tempfile.TemporaryDirectory() as folder:
            port = free_port()
            settings = site_settings(
                url,
                Path(folder) / "storage",
                http,
                smtp,
                node={"port": port, "allowed_callers": ["BENCH"]},
                study={"quiet_seconds": 1.0, "poll_seconds": 0.05},
                models={"dir": str(Path(folder) / "models"), "device": "cpu"},
                routing={
                    "rules": [
                        {
                            "name": "chest",
                            "modality": ["DX"],
                            "body_part": ["CHEST"],
                            "analyzers": ["chest-xray"],
                        }
                    ]
                },
                urgency={
                    "rules": [
                        {
                            "name": "bench-critical",
                            "labels": ["Pneumothorax"],
                            "min_probability": 0.0,
                            "tier": "Critical",
                        }
                    ]
                },
                escalation_rules=[{"name": "bench", "labels": ["Pneumothorax"], "team": "surgery"}],
            )
            prepare_models(settings)
            with (
                prefect_test_harness(server_startup_timeout=120),
                running_node(settings) as site,
                running_worker(settings),
            ):
                for index in range(count + 1):
                    dataset = make_instance(f"bench-chain-{index}", size=512)
                    dataset.ViewPosition = "PA"
                    ae = AE(ae_title="BENCH")
                    ae.add_requested_context(DigitalXRayImageStorageForPresentation)
                    assoc = ae.associate("127.0.0.1", port, ae_title=settings.node.ae_title)
                    assert assoc.is_established
                    assert assoc.send_c_store(dataset).Status == 0
                    assoc.release()
                    received = wait_for_hook(http, dataset.StudyInstanceUID, timeout=300)
                    study = site.store.study(dataset.StudyInstanceUID)
                    assert study is not None and study.closed_at is not None
                    if index:  # the first study warms up Prefect, the model and the pools
                        latencies.append(received - study.closed_at.timestamp())
                        with site.database.connection() as conn:
                            row = conn.execute(
                                "SELECT inference_seconds FROM analyses WHERE study_instance_uid = %s",
                                (dataset.StudyInstanceUID,),
                            ).fetchone()
                        inference.append(float(row["inference_seconds"] or 0.0))
    finally:
        http.stop()
        smtp.stop()
    return {"chain": percentiles(latencies), "chain inference": percentiles(inference)}


def report(results: dict[str, dict[str, float]], out: Callable[[str], None] = print) -> bool:
    out(f"{'mode':<18} {'n':>3} {'p50 s':>8} {'p95 s':>8} {'max s':>8}")
    for mode, stats in results.items():
        out(
            f"{mode:<18} {stats['n']:>3} {stats['p50']:>8.3f} {stats['p95']:>8.3f} {stats['max']:>8.3f}"
        )
    if "flow" in results and "direct" in results:
        out(
            f"ratio flow/direct p50: {results['flow']['p50'] / results['direct']['p50']:.1f}"
            f" (what Prefect's task run adds to the engine)"
        )
    measured = results.get("chain") or results["flow"]
    ok = measured["p95"] <= TARGET_P95_SECONDS
    out(
        f"target p95 <= {TARGET_P95_SECONDS:.0f} s: {'met' if ok else 'MISSED'} ({measured['p95']:.3f} s)"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--chain", action="store_true", help="the full chain (needs issue 3)")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    results = bench_chain(args.studies) if args.chain else bench_escalation(args.studies)
    return 0 if report(results) else 1


if __name__ == "__main__":
    sys.exit(main())
