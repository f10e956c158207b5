"""End-to-end latency: study close → SR stored in the PACS, over N chest X-ray studies.

Usage: ``python -m bench.end_to_end [--studies 20] [--quiet 1.0] [--route warm|work-pool]``.
Starts a real site the way ``pacsflow serve`` does (PostgreSQL, Prefect server, node, one warm
worker; or, with ``--route work-pool``, the dispatcher and one plain
``prefect worker start --pool pacsflow --type process``) and Orthanc as the PACS, sends N
generated chest X-ray studies one at a time from Orthanc, and reports per study:

* total: from the study's close moment (last instance + quiet period, the policy's own clock)
  to the SR's C-STORE acknowledged by Orthanc;
* inference: the model's time on the study (including Grad-CAM);
* overhead: total - inference (close detection, dispatch, Prefect run, result objects, C-STORE).

Targets on CPU: overhead p95 <= 1 s, total p95 <= 5 s.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench.common import percentile, scratch_database, summary
from deployments.commands.serve import running_site
from deployments.orthanc import Modality, OrthancClient, OrthancConfig, OrthancProcess, free_port
from integrations.db.connection import open_database
from integrations.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--quiet", type=float, default=1.0, help="study quiet period in seconds")
    parser.add_argument("--route", choices=("warm", "work-pool"), default="warm")
    parser.add_argument(
        "--models", default="var/models", help="model packages (demo ones are built when missing)"
    )
    args = parser.parse_args()

    from models.demo import ensure_demo_packages
    from models.phantoms.chest import chest_xray_study

    models_dir = Path(args.models).resolve()
    ensure_demo_packages(models_dir, ["chest-xray"])
    with (
        tempfile.TemporaryDirectory(prefix="pacsflow-e2e-") as scratch,
        scratch_database() as database_url,
    ):
        work = Path(scratch)
        node_port, pacs_port, http_port, prefect_port = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        )
        os.environ.pop("PREFECT_API_URL", None)  # the site starts its own Prefect server
        settings = load_settings(
            None,
            search=False,
            node={
                "ae_title": "PACSFLOW",
                "port": node_port,
                "storage_dir": str(work / "storage"),
                "allowed_callers": ["ORTHANC"],
            },
            pacs={"ae_title": "ORTHANC", "port": pacs_port},
            database={"url": database_url},
            study={"quiet_seconds": args.quiet},
            models={"dir": str(models_dir), "build_demo_if_missing": False},
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
            prefect={"server_port": prefect_port},
            worker={"route": args.route, "count": 1 if args.route == "warm" else 0},
        )
        orthanc_process = OrthancProcess(
            OrthancConfig(
                storage_dir=work / "orthanc",
                ae_title="ORTHANC",
                dicom_port=pacs_port,
                http_port=http_port,
                modalities=[Modality("pacsflow", "PACSFLOW", "127.0.0.1", node_port)],
            )
        )
        orthanc_process.start()
        orthanc = OrthancClient(orthanc_process.url)
        try:
            with running_site(settings) as site:
                if args.route == "work-pool":
                    site.supervisor.add(
                        "prefect-worker",
                        process_worker_command(settings),
                        {
                            **site.env,
                            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
                            "PREFECT_WORKER_QUERY_SECONDS": "1",  # default 10 s
                        },
                    )
                database = open_database(settings, migrate_schema=False)
                deadline = time.monotonic() + 120
                while not orthanc.echo("pacsflow"):  # the node child is still starting
                    if time.monotonic() > deadline:
                        raise RuntimeError("the node did not answer Orthanc's C-ECHO")
                    time.sleep(0.5)
                totals, inferences, overheads = [], [], []
                for index in range(args.studies + 1):  # the first study warms caches: not counted
                    findings = (
                        ["Pneumothorax"]
                        if index % 3 == 0
                        else (["Effusion"] if index % 3 == 1 else [])
                    )
                    study = chest_xray_study(
                        5000 + index, findings, accession_number=f"BENCH{index:04d}"
                    )
                    for ds in study.datasets:
                        buffer = io.BytesIO()
                        ds.save_as(buffer, enforce_file_format=True)
                        orthanc.upload(buffer.getvalue())
                    orthanc.send_study("pacsflow", [study.study_instance_uid])
                    total, inference = wait_for_result(
                        database, study.study_instance_uid, args.quiet
                    )
                    if index == 0:
                        continue
                    totals.append(total)
                    inferences.append(inference)
                    overheads.append(total - inference)
                breakdown = step_breakdown(database, quiet=args.quiet)
                database.close()
                executor = (
                    "one warm worker"
                    if args.route == "warm"
                    else "work pool, one Prefect process worker"
                )
                print(
                    f"{args.studies} chest X-ray studies, quiet period {args.quiet} s, {executor}, CPU"
                )
                print(f"close → SR stored : {summary(totals)}")
                print(f"inference         : {summary(inferences)}")
                print(f"overhead          : {summary(overheads)}")
                print("where the time goes (median over the studies, seconds):")
                for name, seconds in breakdown:
                    print(f"  {name:<34} {seconds:7.3f}")
                print(
                    f"targets: overhead p95 {percentile(overheads, 0.95):.3f} s (<= 1 s), "
                    f"total p95 {percentile(totals, 0.95):.3f} s (<= 5 s); Prefect UI {site.prefect_ui_url}"
                )
        finally:
            orthanc.close()
            orthanc_process.stop()


def process_worker_command(settings) -> list[str]:
    import sys

    pool = settings.worker.work_pool
    return [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]


def step_breakdown(database, quiet: float) -> list[tuple[str, float]]:
    """Median time of each stage: close detection, queue, Prefect start, each step."""
    import statistics

    stages: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        stages.setdefault(name, []).append(value)

    with database.connection() as conn:
        studies = conn.execute(
            "SELECT s.study_instance_uid, s.last_received_at, s.closed_at, d.queued_at, d.started_at"
            " FROM studies s JOIN dispatch d USING (study_instance_uid)"
            " WHERE s.state = 'done' AND d.state = 'completed' AND s.accession_number <> 'BENCH0000'"
        ).fetchall()
        for study in studies:
            steps = conn.execute(
                "SELECT step, started_at, finished_at FROM study_steps WHERE study_instance_uid = %s"
                " AND started_at IS NOT NULL ORDER BY started_at",
                (study["study_instance_uid"],),
            ).fetchall()
            close = study["last_received_at"] + timedelta(seconds=quiet)
            add("close detected (closer poll)", (study["closed_at"] - close).total_seconds())
            add(
                "queued -> claimed (warm) / handed to the pool",
                (study["started_at"] - study["queued_at"]).total_seconds(),
            )
            if steps:
                add(
                    "claimed -> first step (Prefect)",
                    (steps[0]["started_at"] - study["started_at"]).total_seconds(),
                )
            previous = None
            for step in steps:
                name = step["step"].split(":")[0]
                add(f"step {name}", (step["finished_at"] - step["started_at"]).total_seconds())
                if name == "fetch_priors":  # runs beside the others
                    continue
                if previous is not None:
                    add(f"  gap before {name}", (step["started_at"] - previous).total_seconds())
                previous = step["finished_at"]
    if not studies:
        print("no completed studies found for the breakdown")
    return [(name, statistics.median(values)) for name, values in stages.items()]


def wait_for_result(
    database, study_uid: str, quiet: float, timeout: float = 120.0
) -> tuple[float, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.connection() as conn:
            row = conn.execute(
                "SELECT s.last_received_at, s.state, max(r.stored_at) FILTER (WHERE r.kind = 'sr') AS stored,"
                " (SELECT sum(inference_seconds) FROM analyses a WHERE a.study_instance_uid = s.study_instance_uid) AS inference"
                " FROM studies s LEFT JOIN result_objects r USING (study_instance_uid)"
                " WHERE s.study_instance_uid = %s GROUP BY s.study_instance_uid",
                (study_uid,),
            ).fetchone()
        if row and row["state"] == "failed":
            raise RuntimeError(f"study {study_uid} failed")
        if row and row["state"] == "done" and row["stored"]:
            close = row["last_received_at"] + timedelta(seconds=quiet)
            return (row["stored"] - close).total_seconds(), float(row["inference"] or 0.0)
        time.sleep(0.05)
    raise RuntimeError(f"study {study_uid} had no stored SR after {timeout} s")


if __name__ == "__main__":
    main()
