"""The capacity planner against the real engine: predicted and observed queue delays.

Usage: ``python -m bench.capacity.validate [--studies 60] [--utilisation 0.7] [--critical 0.25]``.

Starts a real site as ``pacsflow serve`` does (PostgreSQL, Prefect server, node, one warm
worker) with Orthanc as the PACS, then:

1. **measure**: sends ``--measure`` chest X-ray studies one at a time and takes each one's
   worker time from its dispatch row (claimed -> finished), as ``pacsflow capacity
   --from-database`` reads stored runs;
2. **load**: sends ``--studies`` more at Poisson arrival times whose rate puts the measured
   mean service time at ``--utilisation`` of the worker, a ``--critical`` share of them
   ordered STAT (Critical: dispatched first), the rest routine;
3. compares each tier's observed queue delay (dispatch row queued -> claimed) with the
   planner's simulation of the same arrival rate, worker count and priorities, once with the
   service times of step 1 (the planner as an operator runs it) and once with those the load
   run itself measured (the queue model alone, without the drift of the service time).

The planner's figures come from the same code as ``pacsflow capacity``
(``integrations.capacity``). Observed percentiles of a few dozen studies are themselves
noisy: the bench prints both, and the ratio of the means.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import scratch_database
from deployments.commands.serve import running_site
from deployments.orthanc import Modality, OrthancClient, OrthancConfig, OrthancProcess, free_port
from integrations.capacity.simulation import Empirical, StudyClass, offered_load, simulate
from integrations.db.connection import open_database
from integrations.settings import load_settings


def dispatch_rows(database, study_uids: list[str]) -> list[dict]:
    with database.connection() as conn:
        return conn.execute(
            "SELECT study_instance_uid, priority, queued_at, started_at, finished_at, state"
            " FROM dispatch WHERE study_instance_uid = ANY(%s)",
            (study_uids,),
        ).fetchall()


def wait_until_done(database, study_uids: list[str], timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = dispatch_rows(database, study_uids)
        finished = [r for r in rows if r["state"] in ("completed", "failed")]
        if len({r["study_instance_uid"] for r in finished}) >= len(study_uids):
            return finished
        time.sleep(0.2)
    raise RuntimeError(f"only some of {len(study_uids)} studies finished within {timeout} s")


def upload(orthanc: OrthancClient, study) -> None:  # type: ignore[no-untyped-def]
    for ds in study.datasets:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        orthanc.upload(buffer.getvalue())


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else float("nan")


def percentiles(values: list[float]) -> str:
    if not values:
        return "- (one worker cannot keep up: utilisation >= 0.98)"
    p50, p95 = np.percentile(values, 50), np.percentile(values, 95)
    return f"mean {np.mean(values):6.2f}  p50 {p50:6.2f}  p95 {p95:6.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=60, help="studies in the load run")
    parser.add_argument("--measure", type=int, default=8, help="studies timed one at a time")
    parser.add_argument("--utilisation", type=float, default=0.7)
    parser.add_argument("--critical", type=float, default=0.25, help="share ordered STAT")
    parser.add_argument("--quiet", type=float, default=1.0, help="study quiet period, seconds")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--models", default="var/models")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()

    from models.demo import ensure_demo_packages
    from models.phantoms.chest import chest_xray_study

    models_dir = Path(args.models).resolve()
    ensure_demo_packages(models_dir, ["chest-xray"])
    rng = random.Random(args.seed)
    with (
        tempfile.TemporaryDirectory(prefix="pacsflow-capacity-") as scratch,
        scratch_database() as database_url,
    ):
        work = Path(scratch)
        node_port, pacs_port, http_port, prefect_port = (free_port() for _ in range(4))
        os.environ.pop("PREFECT_API_URL", None)  # the site starts its own Prefect server
        settings = load_settings(
            None,
            search=False,
            node={"port": node_port, "storage_dir": str(work / "storage"), "allowed_callers": ["ORTHANC"]},
            pacs={"ae_title": "ORTHANC", "port": pacs_port},
            database={"url": database_url},
            study={"quiet_seconds": args.quiet},
            models={"dir": str(models_dir), "allow_non_clinical": True},
            routing={"rules": [{"name": "chest", "modality": ["DX"], "body_part": ["CHEST"], "analyzers": ["chest-xray"]}]},
            prefect={"server_port": prefect_port},
            worker={"route": "warm", "count": 1},
            priors={"enabled": False},
            # no EMR, ADT feed or console here: their retries would only add load
            emr={"enabled": False},
            hl7={"enabled": False},
            console={"enabled": False},
        )  # fmt: skip
        orthanc_process = OrthancProcess(
            OrthancConfig(
                storage_dir=work / "orthanc",
                dicom_port=pacs_port,
                http_port=http_port,
                modalities=[Modality("pacsflow", "PACSFLOW", "127.0.0.1", node_port)],
            )
        )
        orthanc_process.start()
        orthanc = OrthancClient(orthanc_process.url)
        total = 1 + args.measure + args.studies
        critical_flags = [False] * (1 + args.measure) + [
            rng.random() < args.critical for _ in range(args.studies)
        ]
        studies = []
        for index in range(total):
            findings = ["Pneumothorax"] if index % 3 == 0 else []
            study = chest_xray_study(7000 + index, findings, accession_number=f"CAP{index:04d}")
            for ds in study.datasets:
                ds.RequestedProcedurePriority = "STAT" if critical_flags[index] else "ROUTINE"
            upload(orthanc, study)
            studies.append(study.study_instance_uid)
        try:
            with running_site(settings) as _site:
                database = open_database(settings, migrate_schema=False)
                deadline = time.monotonic() + 180
                while not orthanc.echo("pacsflow"):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the node did not answer Orthanc's C-ECHO")
                    time.sleep(0.5)
                # 1. measure, one at a time (the first warms caches and is not counted)
                for uid in studies[: 1 + args.measure]:
                    orthanc.send_study("pacsflow", [uid])
                    wait_until_done(database, [uid], 180)
                measured_rows = dispatch_rows(database, studies[1 : 1 + args.measure])
                measured = [
                    (r["finished_at"] - r["started_at"]).total_seconds() for r in measured_rows
                ]
                mean_service = float(np.mean(measured))
                rate = args.utilisation / mean_service  # studies per second
                # 2. load: Poisson arrivals, each sent from its own thread at its time
                load_uids = studies[1 + args.measure :]
                offsets, clock = [], 0.0
                for _ in load_uids:
                    clock += rng.expovariate(rate)
                    offsets.append(clock)
                started = time.monotonic()
                errors: list[str] = []

                def send(uid: str, at: float) -> None:
                    time.sleep(max(0.0, started + at - time.monotonic()))
                    client = OrthancClient(orthanc_process.url)
                    try:
                        client.send_study("pacsflow", [uid])
                    except Exception as error:
                        errors.append(f"{uid}: {error}")
                    finally:
                        client.close()

                threads = [
                    threading.Thread(target=send, args=(uid, at), daemon=True)
                    for uid, at in zip(load_uids, offsets, strict=True)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                if errors:
                    raise RuntimeError("sends failed: " + "; ".join(errors[:3]))
                rows = wait_until_done(database, load_uids, 900)
                database.close()
        finally:
            orthanc.close()
            orthanc_process.stop()

    stat = {uid for uid, flag in zip(studies, critical_flags, strict=True) if flag}
    observed: dict[str, list[float]] = {"Critical": [], "Routine": []}
    load_services = []
    for row in rows:
        tier = "Critical" if row["study_instance_uid"] in stat else "Routine"
        observed[tier].append((row["started_at"] - row["queued_at"]).total_seconds())
        load_services.append((row["finished_at"] - row["started_at"]).total_seconds())
    # The arrivals the queue saw: Orthanc's sends and the quiet period move each study's
    # close a little from its planned time, so rate and burstiness are taken from the rows.
    queued = sorted(row["queued_at"] for row in rows)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(queued)]
    span = (queued[-1] - queued[0]).total_seconds()
    achieved_rate = len(gaps) / span
    gap_cv = float(np.std(gaps) / np.mean(gaps))
    busy_span = (max(row["finished_at"] for row in rows) - queued[0]).total_seconds()
    busy_fraction = sum(load_services) / busy_span
    per_hour = {
        "Critical": 3600 * achieved_rate * len(observed["Critical"]) / len(rows),
        "Routine": 3600 * achieved_rate * len(observed["Routine"]) / len(rows),
    }

    def predict(samples: list[float]) -> dict[str, list[float]]:
        """The planner's waits for these service times; empty when one worker cannot keep up
        (the queue would grow without bound: no percentile to compare)."""
        service = Empirical(tuple(samples))
        classes = [StudyClass("DX", tier, per_hour[tier], service) for tier in per_hour]
        if offered_load(classes) >= 0.98:
            return {tier: [] for tier in per_hour}
        result = simulate(classes, 1, hours=200, seed=1)
        return {tier: result.waits(tier).tolist() for tier in per_hour}

    predicted_measured = predict(measured)
    predicted_load = predict(load_services)
    print(
        f"one warm worker, chest X-ray (demo package), CPU; quiet period {args.quiet} s\n"
        f"service time, measured one at a time: {percentiles(measured)} s (n={len(measured)})\n"
        f"service time during the load run    : {percentiles(load_services)} s (n={len(load_services)})\n"
        f"arrivals at the queue: {len(rows)} studies in {span:.0f} s ({achieved_rate * 3600:.0f}/h,"
        f" planned {3600 * len(offsets) / max(offsets):.0f}/h), inter-arrival CV {gap_cv:.2f}"
        f" (Poisson: 1), {len(observed['Critical'])} STAT (Critical)\n"
        f"utilisation: {achieved_rate * mean_service:.2f} by the measured service time,"
        f" {busy_fraction:.2f} observed (worker time / first close -> last finish)\n"
        "queue delay (dispatch queued -> claimed), seconds:"
    )
    figures: dict[str, dict[str, float]] = {}
    for tier in ("Critical", "Routine"):
        print(
            f"  {tier:<8} observed                      : {percentiles(observed[tier])} (n={len(observed[tier])})"
        )
        print(
            f"  {tier:<8} planner, measured service     : {percentiles(predicted_measured[tier])}"
        )
        print(f"  {tier:<8} planner, load-run service     : {percentiles(predicted_load[tier])}")
        figures[tier] = {
            "observed_mean": float(np.mean(observed[tier])) if observed[tier] else 0.0,
            "observed_p95": float(np.percentile(observed[tier], 95)) if observed[tier] else 0.0,
            "planner_mean": _mean(predicted_measured[tier]),
            "planner_p95": _p95(predicted_measured[tier]),
            "planner_load_service_mean": _mean(predicted_load[tier]),
            "planner_load_service_p95": _p95(predicted_load[tier]),
        }
        if observed[tier] and figures[tier]["planner_mean"] > 0:
            print(
                f"  {tier:<8} observed / planner mean     : "
                f"{figures[tier]['observed_mean'] / figures[tier]['planner_mean']:.2f} (measured service),"
                f" {figures[tier]['observed_mean'] / max(figures[tier]['planner_load_service_mean'], 1e-9):.2f}"
                " (load-run service)"
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "measured_service_seconds": measured,
                    "load_service_seconds": load_services,
                    "arrivals_per_hour": achieved_rate * 3600,
                    "inter_arrival_cv": gap_cv,
                    "observed_busy_fraction": busy_fraction,
                    "tiers": figures,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
