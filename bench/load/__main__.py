"""Load benchmark: three 1,000-slice CT studies on three associations and 20 chest X-ray
studies, all at once, into dcmtk storescp (reference) and into a whole pacsflow site (I/O).

Usage: ``python -m bench.load [--ct-studies 3] [--ct-slices 1000] [--cr-studies 20]
[--quiet 2.0] [--skip-reference]``. See ``bench/load/README.md`` for what is measured and
the numbers measured on these machines.

Each receiver gets the same senders (``bench.load.sender``, pynetdicom requestors in their
own processes, started together): per C-STORE the response time, and from the first send to
the last response the instances/s and MB/s. The reference is ``storescp --fork`` (a process
per association, files written without fsync, no database). The site is the one ``pacsflow
serve`` runs (node, PostgreSQL, Prefect server, its warm workers with the express lane, results
sender) with Orthanc as the PACS; there the benchmark also waits until every study has its SR stored in Orthanc,
and reports close -> SR in the PACS per chest X-ray study, Critical ones apart.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import psutil

from bench.common import DCMTK_ENV, REPO_ROOT, percentile, scratch_database, wait_for_echo
from deployments.orthanc import free_port
from integrations.settings import default_worker_count

CT_CALLING = "LOADCT"
CR_CALLING = "LOADCR"
MB = 1_000_000


class PeakMemory:
    """Sampled RSS of a process and its children (storescp forks one per association)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_bytes = 0
        self.peak_single_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = 0
            try:
                for process in [root, *root.children(recursive=True)]:
                    try:
                        rss = process.memory_info().rss
                    except psutil.NoSuchProcess:
                        continue
                    total += rss
                    self.peak_single_bytes = max(self.peak_single_bytes, rss)
            except psutil.NoSuchProcess:
                return
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval)


@dataclass
class Sent:
    """What the senders measured."""

    first_send: float
    last_response: float
    bytes_sent: int
    seconds: list[float]
    ct_seconds: list[float]
    failures: int
    instances: int
    stalled: int
    cr_studies: list[str] = field(default_factory=list)
    critical: list[str] = field(default_factory=list)
    ct_studies: list[str] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        return self.last_response - self.first_send

    def report(self, name: str) -> list[str]:
        return [
            f"{name}: {self.instances} instances ({self.failures} not stored"
            f"{f', {self.stalled} associations stalled and aborted' if self.stalled else ''}) in "
            f"{self.elapsed:.1f} s: {self.instances / self.elapsed:.0f} instances/s, "
            f"{self.bytes_sent / MB / self.elapsed:.0f} MB/s",
            f"  C-STORE response, all: p50 {statistics.median(self.seconds) * 1000:.0f} ms, "
            f"p99 {percentile(self.seconds, 0.99) * 1000:.0f} ms, "
            f"max {max(self.seconds) * 1000:.0f} ms",
        ] + (
            [
                f"  C-STORE response, CT:  p50 {statistics.median(self.ct_seconds) * 1000:.0f} ms,"
                f" p99 {percentile(self.ct_seconds, 0.99) * 1000:.0f} ms"
            ]
            if self.ct_seconds
            else []
        )


def run_senders(ports: list[int], called: str, work: Path, args: argparse.Namespace) -> Sent:
    """Every sender at once (sender i to ``ports[i % len(ports)]``); returns when all have
    released their associations."""
    work.mkdir(parents=True, exist_ok=True)
    go = work / "go"
    commands = [
        [
            "ct",
            "--study-key",
            f"ct-{index + 1}",
            "--count",
            str(args.ct_slices),
            "--calling",
            f"{CT_CALLING}{index + 1}",
        ]
        for index in range(args.ct_studies)
    ]
    if args.cr_studies:
        commands.append(["cr", "--count", str(args.cr_studies), "--calling", CR_CALLING])
    outputs = [work / f"sender-{index}.json" for index in range(len(commands))]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.load.sender",
                *command,
                "--port",
                str(ports[index % len(ports)]),
                "--called",
                called,
                "--out",
                str(out),
                "--go",
                str(go),
            ],
            env=env,
            cwd=REPO_ROOT,
        )
        for index, (command, out) in enumerate(zip(commands, outputs, strict=True))
    ]
    deadline = time.monotonic() + 300
    while not all(out.with_suffix(".ready").exists() for out in outputs):
        if any(process.poll() not in (None, 0) for process in processes):
            raise RuntimeError("a sender failed while preparing its images")
        if time.monotonic() > deadline:
            raise RuntimeError("senders not ready after 300 s")
        time.sleep(0.1)
    go.write_text("go")
    for process in processes:
        if process.wait(1800) != 0:
            raise RuntimeError("a sender failed")
    results = [json.loads(out.read_text()) for out in outputs]
    go.unlink()
    stores = [store for result in results for store in result["stores"]]
    return Sent(
        first_send=min(result["first_send"] for result in results),
        last_response=max(result["last_response"] for result in results),
        bytes_sent=sum(result["bytes_sent"] for result in results),
        seconds=[store["seconds"] for store in stores],
        ct_seconds=[
            store["seconds"]
            for result in results
            if result["kind"] == "ct"
            for store in result["stores"]
        ],
        failures=sum(1 for store in stores if store["status"] != 0),
        stalled=sum(1 for result in results if result["stalled"]),
        instances=len(stores),
        cr_studies=[
            uid for result in results if result["kind"] == "cr" for uid in result["studies"]
        ],
        critical=[uid for result in results for uid in result["critical"]],
        ct_studies=[
            uid for result in results if result["kind"] == "ct" for uid in result["studies"]
        ],
    )


def reference_run(work: Path, args: argparse.Namespace, *, fork: bool) -> list[str]:
    """storescp ``--fork`` on one port; or (``fork=False``) one storescp per association."""
    out = work / "storescp"
    out.mkdir(parents=True)
    associations = args.ct_studies + (1 if args.cr_studies else 0)
    ports = [free_port()] if fork else [free_port() for _ in range(associations)]
    processes = [
        subprocess.Popen(
            [
                "storescp",
                *(["--fork"] if fork else []),
                "-aet",
                "STORESCP",
                "-pdu",
                "131072",
                "-od",
                str(out),
                str(port),
            ],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        for port, process in zip(ports, processes, strict=True):
            wait_for_echo(port, "STORESCP", process)
        with contextlib.ExitStack() as stack:
            memories = [stack.enter_context(PeakMemory(process.pid)) for process in processes]
            sent = run_senders(ports, "STORESCP", work / f"senders-reference-{fork}", args)
        stored = sum(1 for path in out.rglob("*") if path.is_file())
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
        shutil.rmtree(out, ignore_errors=True)
    name = (
        "dcmtk storescp --fork (no fsync, no database)"
        if fork
        else f"dcmtk storescp, {len(ports)} processes, one per association (no fsync, no database)"
    )
    return [
        *sent.report(name),
        f"  files written: {stored} of {sent.instances}; peak memory (all storescp processes): "
        f"{sum(memory.peak_bytes for memory in memories) / MB:.0f} MB",
    ]


def site_run(work: Path, args: argparse.Namespace) -> list[str]:
    from deployments.commands.serve import running_site
    from deployments.orthanc import Modality, OrthancConfig, OrthancProcess
    from integrations.db.connection import open_database
    from integrations.settings import load_settings
    from models.demo import ensure_demo_packages

    models_dir = Path(args.models).resolve()
    ensure_demo_packages(models_dir, ["chest-xray", "head-ct-ich"])
    lines: list[str] = []
    with scratch_database() as database_url:
        node_port, pacs_port, http_port, prefect_port = (free_port() for _ in range(4))
        os.environ.pop("PREFECT_API_URL", None)
        callers = [f"{CT_CALLING}{index + 1}" for index in range(args.ct_studies)]
        settings = load_settings(
            None,
            search=False,
            node={
                "ae_title": "PACSFLOW",
                "port": node_port,
                "storage_dir": str(work / "site"),
                "allowed_callers": [*callers, CR_CALLING, "ORTHANC", "BENCH"],
                # every sender here is 127.0.0.1; at a site each modality has its own address
                "max_connections_per_source": 32,
            },
            pacs={"ae_title": "ORTHANC", "port": pacs_port},
            database={"url": database_url},
            study={"quiet_seconds": args.quiet},
            models={
                "dir": str(models_dir),
                "build_demo_if_missing": False,
                "allow_non_clinical": True,
            },
            routing={
                "rules": [
                    {
                        "name": "chest",
                        "modality": ["DX", "CR"],
                        "body_part": ["CHEST"],
                        "analyzers": ["chest-xray"],
                    },
                    {
                        "name": "head-ct",
                        "modality": ["CT"],
                        "body_part": ["HEAD"],
                        "analyzers": ["head-ct-ich"],
                    },
                ]
            },
            prefect={"server_port": prefect_port},
            worker={
                "route": "warm",
                "count": args.workers,
                "express_workers": args.express_workers,
            },
        )
        pacs = OrthancProcess(
            OrthancConfig(
                storage_dir=work / "orthanc",
                ae_title="ORTHANC",
                dicom_port=pacs_port,
                http_port=http_port,
                modalities=[Modality("pacsflow", "PACSFLOW", "127.0.0.1", node_port)],
            )
        )
        pacs.start()
        try:
            with running_site(settings) as site:
                node = next(child for child in site.supervisor.children if child.name == "node")
                assert node.process is not None
                deadline = time.monotonic() + 120
                while True:
                    try:
                        wait_for_echo(node_port, "PACSFLOW", node.process, timeout=5)
                        break
                    except RuntimeError:
                        if time.monotonic() > deadline:
                            raise
                wait_for_workers(settings, args.workers)
                with PeakMemory(node.process.pid) as memory:
                    sent = run_senders([node_port], "PACSFLOW", work / "senders-site", args)
                database = open_database(settings, migrate_schema=False)
                try:
                    stored = count_instances(database, sent)
                    results = wait_for_results(database, sent, args)
                finally:
                    database.close()
                lines += sent.report("pacsflow node (fsync + PostgreSQL row, whole site running)")
                lines.append(
                    f"  instances recorded: {stored} of {sent.instances}; peak memory, node "
                    f"process: {memory.peak_single_bytes / MB:.0f} MB"
                )
                lines += results
        finally:
            pacs.stop()
    return lines


def cr_breakdown(database, studies: list[str]) -> list[str]:
    """Where a chest X-ray's close -> SR time goes, p50 over the studies: waiting for a
    worker, the run (and its slowest steps), and the results sender after the run."""
    if not studies:
        return []
    with database.connection() as conn:
        phases = conn.execute(
            "SELECT extract(epoch FROM d.started_at - d.closed_at) AS waiting,"
            " extract(epoch FROM d.finished_at - d.started_at) AS run,"
            " extract(epoch FROM max(r.stored_at) FILTER (WHERE r.kind = 'sr') - d.finished_at)"
            "  AS delivery, d.worker, d.started_at, d.finished_at, d.study_instance_uid,"
            " (SELECT sum(extract(epoch FROM st.finished_at - st.started_at)) FROM study_steps st"
            "   WHERE st.study_instance_uid = d.study_instance_uid AND st.step <> 'fetch_priors')"
            "  AS in_steps"
            " FROM dispatch d LEFT JOIN result_objects r USING (study_instance_uid)"
            " WHERE d.study_instance_uid = ANY(%s) AND d.state = 'completed'"
            " GROUP BY d.id",
            (studies,),
        ).fetchall()
        steps = conn.execute(
            "SELECT step, percentile_cont(0.5) WITHIN GROUP"
            " (ORDER BY extract(epoch FROM finished_at - started_at)) AS p50"
            " FROM study_steps WHERE study_instance_uid = ANY(%s) AND started_at IS NOT NULL"
            " GROUP BY step ORDER BY p50 DESC LIMIT 6",
            (studies,),
        ).fetchall()
    if not phases:
        return []

    def p50(column: str) -> float:
        return statistics.median(float(row[column] or 0.0) for row in phases)

    by_worker: dict[str, list[dict]] = {}
    for row in phases:
        by_worker.setdefault(row["worker"].rsplit(":", 1)[-1], []).append(row)

    def worker_line(name: str, rows: list[dict]) -> str:
        rows = sorted(rows, key=lambda row: row["started_at"])
        runs = [float(row["run"]) for row in rows]
        span = (rows[-1]["finished_at"] - rows[0]["started_at"]).total_seconds()
        each = ", ".join(f"{run:.1f}" for run in runs)
        return f"{name} {len(rows)} in {sum(runs):.1f} s of runs ({each}) over {span:.1f} s"

    workers = [worker_line(name, rows) for name, rows in sorted(by_worker.items())]
    # fetch_priors runs beside inference (a submitted task), so it is not added to the steps
    outside = [float(row["run"]) - float(row["in_steps"] or 0.0) for row in phases]
    slowest = max(phases, key=lambda row: float(row["run"]))
    with database.connection() as conn:
        slowest_steps = conn.execute(
            "SELECT step, extract(epoch FROM finished_at - started_at) AS seconds,"
            " extract(epoch FROM started_at - %s) AS at FROM study_steps"
            " WHERE study_instance_uid = %s AND started_at IS NOT NULL ORDER BY started_at",
            (slowest["started_at"], slowest["study_instance_uid"]),
        ).fetchall()
    return [
        f"    where it goes (p50): waiting for a worker {p50('waiting'):.1f} s, run"
        f" {p50('run'):.1f} s, results sender after the run {p50('delivery'):.1f} s",
        f"    taken by: {'; '.join(workers)}",
        "    slowest steps (p50): "
        + ", ".join(f"{row['step']} {float(row['p50']):.2f} s" for row in steps),
        f"    a run outside its steps (Prefect run start and end, task orchestration): p50"
        f" {statistics.median(outside):.2f} s, max {max(outside):.2f} s",
        f"    the slowest run ({float(slowest['run']):.1f} s), step at +start: "
        + ", ".join(
            f"{row['step']} {float(row['seconds']):.2f} s @{float(row['at']):.2f}"
            for row in slowest_steps
        ),
    ]


def wait_for_workers(settings, workers: int, timeout: float = 300.0) -> None:
    """Until every warm worker listens on the dispatch queue: models loaded and warmed up, as
    on a site that has been running (the first study must not wait for a worker's start)."""
    from integrations.db.connection import open_database
    from integrations.db.store import DISPATCH_CHANNEL

    database = open_database(settings, migrate_schema=False)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with database.connection() as conn:
                listening = conn.execute(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE query = %s",
                    (f"LISTEN {DISPATCH_CHANNEL}",),
                ).fetchone()["n"]
            if listening >= workers:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{listening} of {workers} workers ready in {timeout:.0f} s")
            time.sleep(0.5)
    finally:
        database.close()


def count_instances(database, sent: Sent) -> int:
    with database.connection() as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM instances WHERE study_instance_uid = ANY(%s)",
            (sent.ct_studies + sent.cr_studies,),
        ).fetchone()
    return int(row["n"])


def wait_for_results(database, sent: Sent, args: argparse.Namespace) -> list[str]:
    """Until every study has its SR stored in the PACS (or failed); the latency lines."""
    studies = sent.ct_studies + sent.cr_studies
    deadline = time.monotonic() + args.result_timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        with database.connection() as conn:
            rows = conn.execute(
                "SELECT s.study_instance_uid, s.state, s.last_received_at,"
                " max(r.stored_at) FILTER (WHERE r.kind = 'sr') AS sr_stored"
                " FROM studies s LEFT JOIN result_objects r USING (study_instance_uid)"
                " WHERE s.study_instance_uid = ANY(%s) GROUP BY s.study_instance_uid",
                (studies,),
            ).fetchall()
        finished = [row for row in rows if row["sr_stored"] or row["state"] == "failed"]
        if len(finished) == len(studies):
            break
        time.sleep(0.5)
    by_uid = {row["study_instance_uid"]: row for row in rows}
    missing = [uid for uid in studies if not (by_uid.get(uid) or {}).get("sr_stored")]
    failed = [uid for uid in studies if (by_uid.get(uid) or {}).get("state") == "failed"]
    lines = [
        f"  studies with their SR in the PACS: {len(studies) - len(missing)} of {len(studies)}"
        f" ({len(failed)} failed)"
    ]
    stored_times = [by_uid[uid]["sr_stored"].timestamp() for uid in studies if uid not in missing]
    if stored_times:
        lines.append(
            f"  time to the last result (first send -> last SR stored in the PACS): "
            f"{max(stored_times) - sent.first_send:.1f} s"
        )

    def close_to_sr(uid: str) -> float:
        row = by_uid[uid]
        close = row["last_received_at"] + timedelta(seconds=args.quiet)
        return (row["sr_stored"] - close).total_seconds()

    cr = [close_to_sr(uid) for uid in sent.cr_studies if uid not in missing]
    critical = [close_to_sr(uid) for uid in sent.critical if uid not in missing]
    if cr:
        lines.append(
            f"  chest X-ray close -> SR in the PACS: p50 {statistics.median(cr):.1f} s, "
            f"p95 {percentile(cr, 0.95):.1f} s, max {max(cr):.1f} s (n={len(cr)}; target p95 <= 10 s)"
        )
    if critical:
        lines.append(
            f"    of which Critical (pneumothorax): p50 {statistics.median(critical):.1f} s, "
            f"max {max(critical):.1f} s (n={len(critical)})"
        )
    lines += cr_breakdown(database, [uid for uid in sent.cr_studies if uid not in missing])
    ct = [close_to_sr(uid) for uid in sent.ct_studies if uid not in missing]
    if ct:
        lines.append(f"  CT close -> SR in the PACS: {', '.join(f'{value:.1f} s' for value in ct)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct-studies", type=int, default=3)
    parser.add_argument("--ct-slices", type=int, default=1000)
    parser.add_argument("--cr-studies", type=int, default=20)
    parser.add_argument("--quiet", type=float, default=2.0, help="study quiet period, seconds")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_worker_count(),
        help="warm workers (default: what a site on this machine runs)",
    )
    parser.add_argument(
        "--express-workers",
        type=int,
        default=None,
        help="of which express workers (default: the site default, 1 when workers >= 2)",
    )
    parser.add_argument("--result-timeout", type=float, default=900.0)
    parser.add_argument("--models", default="var/models")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-site", action="store_true")
    args = parser.parse_args()
    lines = [
        f"{args.ct_studies} CT studies x {args.ct_slices} slices (512x512x16 bit) on "
        f"{args.ct_studies} associations + {args.cr_studies} chest X-ray studies "
        f"(4 associations at a time), all started together; {os.cpu_count()} cores; "
        f"{args.workers} warm workers, express lane: "
        f"{'site default' if args.express_workers is None else args.express_workers}"
    ]
    with tempfile.TemporaryDirectory(prefix="pacsflow-load-") as scratch:
        work = Path(scratch)
        if not args.skip_reference:
            lines += reference_run(work, args, fork=True)
            if "stalled" in " ".join(lines):
                lines += reference_run(work, args, fork=False)
            print("\n".join(lines), flush=True)  # the site's own logs follow
        if not args.skip_site:
            lines += site_run(work, args)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
