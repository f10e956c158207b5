"""Study close → first notification received, p50/p95 over 20 Critical studies on CPU (I/O).

Usage: ``python -m bench.escalation.run [--studies 20] [--chain] [--models var/models]``.
Peers are real and local: PostgreSQL, a recording webhook receiver and SMTP server (the
notification counts when the signed POST arrives), a Prefect server. Target: p95 <= 10 s.

Default (``flow`` and ``direct``), needs no model:
    each study is recorded and closed in PostgreSQL (the database clock starts here, as the
    study closer's does); then a Prefect flow run calls the ``escalate`` task on a Critical
    analysis, as ``process-study`` does right after inference (``flow``), or the escalation
    engine is called without Prefect (``direct``: the reference measured in the same run;
    ``flow / direct`` is what Prefect's task machinery adds). Neither includes dispatch or
    inference.
``--chain``:
    a site started the way ``pacsflow serve`` does (Prefect server, node, one warm worker),
    configured from a TOML file with the webhook secret in the environment; each study is sent
    by C-STORE; the time runs from its close (last instance + quiet period, the policy's own
    clock) through dispatch, run_inference on CPU and escalate to the webhook's arrival.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import percentile, scratch_database, summary
from deployments.orthanc import Modality, OrthancConfig, OrthancProcess, free_port
from integrations.db.connection import open_database
from integrations.settings import Settings, load_settings
from tests.fix_notify import RecordingHttpServer, RecordingSmtpServer

TARGET_P95_SECONDS = 10.0
HARD_LIMIT_SECONDS = 60.0
WEBHOOK_SECRET = "bench-webhook-secret"


def escalation_section(http: RecordingHttpServer, smtp: RecordingSmtpServer) -> dict[str, Any]:
    return {
        "people": {"surg1": {"name": "Dr Surgeon", "email": "surg1@bench.test"}},
        "teams": {
            "surgery": {
                "channels": ["webhook", "email"],
                "delivery": "all",
                "on_call": [{"person": "surg1"}],
                "webhook_url": http.url("/hooks/surgery"),
            }
        },
        "rules": [{"name": "bench", "labels": ["Pneumothorax"], "team": "surgery"}],
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
    }


def wait_for_notification(
    http: RecordingHttpServer, study_uid: str, timeout: float = 120.0
) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request in http.received("/hooks/surgery"):
            if request.json()["study"]["study_instance_uid"] == study_uid:
                return request.received_at
        time.sleep(0.002)
    raise TimeoutError(f"no notification for study {study_uid} within {timeout} s")


def bench_flow_and_direct(
    count: int, http: RecordingHttpServer, smtp: RecordingSmtpServer
) -> dict[str, list[float]]:
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from integrations.escalation.engine import CriticalFindingInput, EscalationEngine
    from tasks.escalation import escalate
    from tasks.runtime import Runtime, install_runtime, reset_runtime
    from tests.integration.escalation.conftest import Site

    results: dict[str, list[float]] = {"flow": [], "direct": []}
    with scratch_database() as url, tempfile.TemporaryDirectory(prefix="pacsflow-esc-") as folder:
        settings = load_settings(
            None,
            search=False,
            database={"url": url},
            node={"storage_dir": str(Path(folder) / "storage")},
            escalation={**escalation_section(http, smtp), "webhook_secret": WEBHOOK_SECRET},
        )
        runtime = Runtime(settings=settings, database=open_database(settings))
        install_runtime(runtime)
        site = Site(settings, runtime, http, smtp, Path(folder))

        @flow(name="bench-escalate", persist_result=False)
        async def escalate_after_inference(context: Any, analysis: Any) -> int:
            return escalate(context, [analysis])

        try:
            with prefect_test_harness(server_startup_timeout=120):
                for index in range(count + 1):  # the first run warms Prefect up: not counted
                    context = site.closed_study(f"bench-flow-{index}")
                    analysis = site.analysis(context, [("Tension Pneumothorax", 0.93)])
                    asyncio.run(escalate_after_inference(context, analysis))
                    received = wait_for_notification(http, context.study_instance_uid)
                    if index:
                        results["flow"].append(received - context.closed_at.timestamp())
            engine = EscalationEngine(settings, runtime.database, name="bench-direct")
            for index in range(count):
                context = site.closed_study(f"bench-direct-{index}")
                engine.open_and_notify(
                    study_instance_uid=context.study_instance_uid,
                    generation=context.generation,
                    study_closed_at=context.closed_at,
                    findings=[CriticalFindingInput("bench", "Tension Pneumothorax", 0.93)],
                )
                received = wait_for_notification(http, context.study_instance_uid)
                results["direct"].append(received - context.closed_at.timestamp())
        finally:
            reset_runtime()
    return results


def chain_config(
    folder: Path,
    url: str,
    node_port: int,
    prefect_port: int,
    models: Path,
    http: RecordingHttpServer,
    smtp: RecordingSmtpServer,
    quiet: float,
) -> Path:
    people = escalation_section(http, smtp)
    text = f"""
[node]
ae_title = "PACSFLOW"
port = {node_port}
storage_dir = "{folder / "storage"}"
allowed_callers = ["BENCH"]

[database]
url = "{url}"

[study]
quiet_seconds = {quiet}
poll_seconds = 0.05

[models]
dir = "{models}"
device = "cpu"
build_demo_if_missing = false

[prefect]
server_port = {prefect_port}

[[routing.rules]]
name = "chest"
modality = ["DX", "CR"]
body_part = ["CHEST"]
analyzers = ["chest-xray"]

# any pneumothorax probability is Critical here, so every generated study takes the Critical path
[[urgency.rules]]
name = "bench-critical"
labels = ["Pneumothorax"]
min_probability = 0.0
tier = "Critical"

[escalation]
smtp_host = "{smtp.host}"
smtp_port = {smtp.port}

[escalation.people.surg1]
name = "Dr Surgeon"
email = "surg1@bench.test"

[escalation.teams.surgery]
channels = ["webhook", "email"]
delivery = "all"
on_call = [{{person = "surg1"}}]
webhook_url = "{people["teams"]["surgery"]["webhook_url"]}"

[[escalation.rules]]
name = "bench"
labels = ["Pneumothorax"]
team = "surgery"
"""
    path = folder / "pacsflow.toml"
    path.write_text(text)
    return path


def chain_study(index: int) -> list[Any]:
    """A generated chest radiograph study with a pneumothorax (the models' phantom)."""
    from models.phantoms.chest import chest_xray_study

    study = chest_xray_study(7000 + index, ["Pneumothorax"], accession_number=f"ESC{index:04d}")
    return list(study.datasets)


def bench_chain(
    count: int, models: Path, quiet: float, http: RecordingHttpServer, smtp: RecordingSmtpServer
) -> dict[str, list[float]]:
    from pynetdicom import AE

    from deployments.commands.serve import running_site
    from models.demo import ensure_demo_packages

    ensure_demo_packages(models, ["chest-xray"])
    latencies: list[float] = []
    inference: list[float] = []
    with (
        scratch_database() as url,
        tempfile.TemporaryDirectory(prefix="pacsflow-esc-chain-") as folder,
    ):
        node_port, prefect_port, pacs_port = free_port(), free_port(), free_port()
        config = chain_config(
            Path(folder), url, node_port, prefect_port, models.resolve(), http, smtp, quiet
        )
        with config.open("a") as handle:  # Orthanc as the PACS the results go back to
            handle.write(f'\n[pacs]\nae_title = "ORTHANC"\nport = {pacs_port}\n')
        os.environ.pop("PREFECT_API_URL", None)  # the site starts its own Prefect server
        os.environ["PACSFLOW_ESCALATION__WEBHOOK_SECRET"] = WEBHOOK_SECRET  # children inherit it
        settings = load_settings(config)
        orthanc = OrthancProcess(
            OrthancConfig(
                storage_dir=Path(folder) / "orthanc",
                ae_title="ORTHANC",
                dicom_port=pacs_port,
                http_port=free_port(),
                modalities=[Modality("pacsflow", "PACSFLOW", "127.0.0.1", node_port)],
            )
        )
        orthanc.start()
        with running_site(settings) as _site:
            database = open_database(settings, migrate_schema=False)
            try:
                wait_for_node(settings)
                for index in range(count + 1):  # the first study warms the worker: not counted
                    datasets = chain_study(index)
                    send(datasets, settings, AE)
                    study_uid = datasets[0].StudyInstanceUID
                    received = wait_for_notification(http, study_uid, timeout=300)
                    with database.connection() as conn:
                        row = conn.execute(
                            "SELECT s.closed_at, (SELECT sum(inference_seconds) FROM analyses a"
                            " WHERE a.study_instance_uid = s.study_instance_uid) AS inference"
                            " FROM studies s WHERE s.study_instance_uid = %s",
                            (study_uid,),
                        ).fetchone()
                    if index:
                        latencies.append(received - row["closed_at"].timestamp())
                        inference.append(float(row["inference"] or 0.0))
                    wait_for_run(database, study_uid)  # one study at a time, like bench.end_to_end
            finally:
                database.close()
                orthanc.stop()
    return {"chain": latencies, "chain inference": inference}


def routine_study(index: int) -> list[Any]:
    """A generated ankle radiograph study (AP + lateral) without a fracture: routine work."""
    from models.phantoms.msk import msk_study

    study = msk_study(8000 + index, body_part="ANKLE", accession_number=f"RTN{index:04d}")
    return list(study.datasets)


@contextmanager
def pacs_down(mode: str) -> Iterator[int]:
    """A PACS port that refuses connections (``closed``) or accepts and never answers."""
    if mode == "closed":
        yield free_port()  # nothing listens there
        return
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def store_path() -> str:
    """Which result store path this build runs (the results outbox is issue 9, item 1)."""
    if importlib.util.find_spec("integrations.db.results_outbox") is not None:
        return "results outbox (asynchronous delivery to the PACS)"
    return "synchronous store_results with [retries] (no results outbox in this build)"


def active_count(database: Any) -> int:
    """Studies queued or running."""
    with database.connection() as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM dispatch WHERE state IN ('queued', 'running')"
        ).fetchone()
    return int(row["n"])


def queued_count(database: Any) -> int:
    with database.connection() as conn:
        return int(
            conn.execute("SELECT count(*) AS n FROM dispatch WHERE state = 'queued'").fetchone()[
                "n"
            ]
        )


def wait_closed(database: Any, study_uids: list[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM dispatch WHERE study_instance_uid = ANY(%s)",
                (study_uids,),
            ).fetchone()
        if row["n"] >= len(study_uids):
            return
        time.sleep(0.1)
    raise TimeoutError("the routine studies were not queued")


def wait_busy(database: Any, workers: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM dispatch WHERE state = 'running'"
            ).fetchone()
        if row["n"] >= workers:
            return
        time.sleep(0.1)
    raise TimeoutError(f"fewer than {workers} workers took a study")


def bench_fault(
    count: int,
    models: Path,
    quiet: float,
    mode: str,
    routine: int,
    http: RecordingHttpServer,
    smtp: RecordingSmtpServer,
    fifo: bool = False,
) -> dict[str, list[float]]:
    from pynetdicom import AE

    from deployments.commands.serve import running_site
    from models.demo import ensure_demo_packages

    ensure_demo_packages(models, ["chest-xray", "msk-fracture"])
    latencies: list[float] = []
    ahead: list[float] = []
    with (
        scratch_database() as url,
        tempfile.TemporaryDirectory(prefix="pacsflow-esc-fault-") as folder,
        pacs_down(mode) as pacs_port,
    ):
        node_port, prefect_port = free_port(), free_port()
        config = chain_config(
            Path(folder), url, node_port, prefect_port, models.resolve(), http, smtp, quiet
        )
        with config.open("a") as handle:
            handle.write(
                f'\n[pacs]\nae_title = "ORTHANC"\nport = {pacs_port}\n'
                '\n[[routing.rules]]\nname = "ankle"\nmodality = ["DX", "CR"]\n'
                'body_part = ["ANKLE"]\nanalyzers = ["msk-fracture"]\n'
            )
            if fifo:  # the reference: every study ranks 0, claims follow close time
                handle.write("\n[worker]\npriority_rules = []\n")
        os.environ.pop("PREFECT_API_URL", None)
        os.environ["PACSFLOW_ESCALATION__WEBHOOK_SECRET"] = WEBHOOK_SECRET
        settings = load_settings(config)
        print(
            f"fault run: PACS {mode} (port {pacs_port}), {settings.worker.count} warm workers"
            f" (the default here), {routine} routine studies ahead; store path: {store_path()};"
            f" claims {'in close order (--fifo)' if fifo else 'by priority'}",
            flush=True,
        )
        with running_site(settings) as _site:
            database = open_database(settings, migrate_schema=False)
            try:
                wait_for_node(settings)
                sent = 0
                for index in range(count):
                    missing = max(0, routine - queued_count(database))
                    uids = []
                    for _ in range(missing):
                        datasets = routine_study(sent)
                        send(datasets, settings, AE)
                        uids.append(str(datasets[0].StudyInstanceUID))
                        sent += 1
                    wait_closed(database, uids)
                    # every worker is started and busy with a routine study (the first time,
                    # this waits for the workers to load their models)
                    wait_busy(database, settings.worker.count)
                    datasets = chain_study(index)
                    ahead.append(float(active_count(database)))  # just before the Critical one
                    send(datasets, settings, AE)
                    study_uid = datasets[0].StudyInstanceUID
                    received = wait_for_notification(http, study_uid, timeout=600)
                    with database.connection() as conn:
                        row = conn.execute(
                            "SELECT closed_at FROM studies WHERE study_instance_uid = %s",
                            (study_uid,),
                        ).fetchone()
                    latencies.append(received - row["closed_at"].timestamp())
                    print(
                        f"  Critical study {index + 1}/{count}: first notification"
                        f" {latencies[-1]:.1f} s after close",
                        flush=True,
                    )
            finally:
                database.close()
    label = f"fault ({mode}{', fifo' if fifo else ''})"
    return {label: latencies, "queued or running when sent": ahead}


def wait_for_run(database: Any, study_uid: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.connection() as conn:
            row = conn.execute(
                "SELECT state FROM studies WHERE study_instance_uid = %s", (study_uid,)
            ).fetchone()
        if row and row["state"] in ("done", "failed"):
            return
        time.sleep(0.1)
    raise TimeoutError(f"the run of {study_uid} did not finish")


def wait_for_node(settings: Settings, timeout: float = 120.0) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ae = AE(ae_title="BENCH")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", settings.node.port, ae_title=settings.node.ae_title)
        if assoc.is_established:
            assoc.release()
            return
        time.sleep(0.5)
    raise TimeoutError("the node did not answer C-ECHO")


def send(datasets: list[Any], settings: Settings, ae_class: Any) -> None:
    ae = ae_class(ae_title="BENCH")
    for dataset in datasets:
        ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", settings.node.port, ae_title=settings.node.ae_title)
    assert assoc.is_established, "association to the node refused"
    try:
        for dataset in datasets:
            status = assoc.send_c_store(dataset)
            assert status.Status == 0, f"C-STORE failed: 0x{status.Status:04X}"
    finally:
        assoc.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--chain", action="store_true", help="the whole path from C-STORE")
    parser.add_argument("--models", default="var/models", help="model packages (--chain)")
    parser.add_argument("--quiet", type=float, default=1.0, help="quiet period (--chain)")
    parser.add_argument(
        "--fault", choices=["closed", "blackhole"], help="the fault run: PACS down this way"
    )
    parser.add_argument("--routine", type=int, default=20, help="routine studies ahead (--fault)")
    parser.add_argument(
        "--fifo", action="store_true", help="reference: claims in close order (--fault)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # before prefect is imported
    logging.basicConfig(level=logging.WARNING)
    http, smtp = RecordingHttpServer(), RecordingSmtpServer()
    http.start()
    smtp.start()
    try:
        if args.fault:
            results = bench_fault(
                args.studies,
                Path(args.models),
                args.quiet,
                args.fault,
                args.routine,
                http,
                smtp,
                fifo=args.fifo,
            )
        elif args.chain:
            results = bench_chain(args.studies, Path(args.models), args.quiet, http, smtp)
        else:
            results = bench_flow_and_direct(args.studies, http, smtp)
    finally:
        http.stop()
        smtp.stop()
    print(f"{args.studies} Critical studies, study close → first notification received (CPU)")
    for mode, values in results.items():
        print(f"{mode:<16}: {summary(values)}")
    if "flow" in results:
        flow, direct = results["flow"], results["direct"]
        print(
            f"flow / direct p50: {percentile(flow, 0.5) / percentile(direct, 0.5):.1f}"
            " (what the Prefect task run adds to the escalation engine)"
        )
    fault = next((values for mode, values in results.items() if mode.startswith("fault")), None)
    if fault:
        worst = max(fault)
        print(
            f"go-live limit: every first notification within {HARD_LIMIT_SECONDS:.0f} s:"
            f" {'met' if worst <= HARD_LIMIT_SECONDS else 'MISSED'} (max {worst:.3f} s)"
        )
    measured = fault or results.get("chain") or results["flow"]
    p95 = percentile(measured, 0.95)
    print(
        f"target p95 <= {TARGET_P95_SECONDS:.0f} s: {'met' if p95 <= TARGET_P95_SECONDS else 'MISSED'} ({p95:.3f} s)"
    )
    return 0 if p95 <= TARGET_P95_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
