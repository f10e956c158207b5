"""``pacsflow demo``: the whole site on embedded defaults, a local Orthanc as the PACS (I/O).

What it does, in order: builds the demo model packages when missing (trained on generated
images; not for clinical use), starts Orthanc with the node registered as a modality, starts
``pacsflow serve`` (embedded PostgreSQL, Prefect server and UI, node, warm worker), uploads
generated demo studies to Orthanc and has Orthanc send them to the node, waits until the
results are back in Orthanc, prints a table, and keeps running until Ctrl-C (``--once`` stops
after the table).
"""

from __future__ import annotations

import argparse
import io
import logging
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from deployments.commands.serve import running_site, stop_event, wait_until_stopped
from deployments.demo_studies import DemoStudy
from deployments.orthanc import (
    Modality,
    OrthancClient,
    OrthancConfig,
    OrthancProcess,
    orthanc_available,
)
from integrations.db.connection import open_database
from integrations.errors import ConfigError
from integrations.settings import Settings, load_settings

log = logging.getLogger("pacsflow.demo")
NODE_ALIAS = "pacsflow"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the demo: local Orthanc as PACS, demo studies, results table"
    )
    parser.add_argument("--once", action="store_true", help="exit after the results table")
    parser.add_argument("--orthanc-http-port", type=int, default=8042)
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for all results"
    )
    parser.set_defaults(handler=run)


@dataclass
class Outcome:
    study: DemoStudy
    state: str = "waiting"
    tier: str = ""
    findings: str = ""
    close_to_stored_seconds: float | None = None
    inference_seconds: float | None = None
    result_objects: int = 0


def start_orthanc(settings: Settings, http_port: int) -> OrthancProcess:
    config = OrthancConfig(
        storage_dir=settings.node.storage_dir / "orthanc",
        ae_title=settings.pacs.ae_title,
        dicom_port=settings.pacs.port,
        http_port=http_port,
        modalities=[
            Modality(NODE_ALIAS, settings.node.ae_title, settings.node.host, settings.node.port)
        ],
    )
    process = OrthancProcess(config)
    process.start()
    return process


def send_studies(orthanc: OrthancClient, studies: list[DemoStudy]) -> None:
    for study in studies:
        for dataset in study.phantom.datasets:
            buffer = io.BytesIO()
            dataset.save_as(buffer, enforce_file_format=True)
            orthanc.upload(buffer.getvalue())
    for study in studies:
        outcome = orthanc.send_study(NODE_ALIAS, [study.study_instance_uid])
        log.info(
            "Orthanc sent %s (%s instances, %s failed)",
            study.accession_number,
            outcome.get("InstancesCount"),
            outcome.get("FailedInstancesCount"),
        )


def collect(settings: Settings, outcomes: list[Outcome]) -> bool:
    """Refresh outcomes from the database; True when every study is finished."""
    database = open_database(settings, migrate_schema=False)
    try:
        with database.connection() as conn:
            for outcome in outcomes:
                uid = outcome.study.study_instance_uid
                study = conn.execute(
                    "SELECT state, closed_at FROM studies WHERE study_instance_uid = %s", (uid,)
                ).fetchone()
                if study is None:
                    continue
                outcome.state = study["state"]
                analyses = conn.execute(
                    "SELECT tier, summary, inference_seconds FROM analyses WHERE study_instance_uid = %s",
                    (uid,),
                ).fetchall()
                stored = conn.execute(
                    "SELECT count(*) AS n, max(stored_at) AS last FROM result_objects"
                    " WHERE study_instance_uid = %s AND stored_at IS NOT NULL",
                    (uid,),
                ).fetchone()
                if analyses:
                    tiers = [a["tier"] for a in analyses]
                    outcome.tier = min(tiers, key=["Critical", "Urgent", "Routine"].index)
                    outcome.findings = _findings_text(analyses)
                    outcome.inference_seconds = sum(a["inference_seconds"] or 0 for a in analyses)
                outcome.result_objects = stored["n"]
                if stored["last"] and study["closed_at"]:
                    outcome.close_to_stored_seconds = (
                        stored["last"] - study["closed_at"]
                    ).total_seconds()
    finally:
        database.close()
    return all(outcome.state in ("done", "failed", "unrouted") for outcome in outcomes)


def _findings_text(analyses: list[dict[str, Any]]) -> str:
    parts = []
    for analysis in analyses:
        summary = analysis["summary"] or {}
        if summary.get("status") == "not_analysable":
            parts.append(f"not analysable: {summary.get('reason')}")
        for finding in summary.get("positive", []):
            parts.append(f"{finding['label']} {finding['probability']:.2f}")
    return ", ".join(parts) or "no finding"


def print_table(outcomes: list[Outcome], site_ui: str, orthanc_url: str) -> None:
    table = Table(
        title="pacsflow demo — demo weights trained on generated images; not for clinical use"
    )
    for column in (
        "accession",
        "study",
        "expected",
        "findings",
        "urgency",
        "state",
        "close→stored",
        "inference",
        "objects",
    ):
        table.add_column(column)
    for outcome in outcomes:
        table.add_row(
            outcome.study.accession_number,
            outcome.study.description,
            ", ".join(sorted(outcome.study.phantom.labels)) or "normal",
            outcome.findings,
            outcome.tier,
            outcome.state,
            f"{outcome.close_to_stored_seconds:.2f} s"
            if outcome.close_to_stored_seconds is not None
            else "",
            f"{outcome.inference_seconds:.2f} s" if outcome.inference_seconds is not None else "",
            str(outcome.result_objects),
        )
    console = Console()
    console.print(table)
    console.print(f"Prefect UI (one flow run per study): {site_ui}")
    console.print(
        f"Orthanc (the demo PACS, results as new series): {orthanc_url}/app/explorer.html"
    )


def prepare_models(settings: Settings) -> None:
    from models.demo import ensure_demo_packages

    names = settings.analyzer_names()
    log.info(
        "checking demo model packages for %s (built once, takes a few minutes)", ", ".join(names)
    )
    ensure_demo_packages(settings.models.dir, names)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if not orthanc_available():
        raise ConfigError(
            "the demo needs Orthanc as its PACS: run `make demo` as root, or apt-get install orthanc"
        )
    prepare_models(settings)
    stop = stop_event()
    orthanc_process = start_orthanc(settings, args.orthanc_http_port)
    orthanc = OrthancClient(orthanc_process.url)
    try:
        with running_site(settings) as site:
            from deployments.demo_studies import demo_studies

            studies = demo_studies()
            outcomes = [Outcome(study) for study in studies]
            send_studies(orthanc, studies)
            deadline = time.monotonic() + args.timeout
            while (
                not collect(settings, outcomes)
                and time.monotonic() < deadline
                and not stop.is_set()
            ):
                site.supervisor.check()
                time.sleep(1.0)
            print_table(outcomes, site.prefect_ui_url, orthanc_process.url)
            failed = [o for o in outcomes if o.state != "done"]
            if not args.once:
                print(
                    "pacsflow keeps running; send more studies from Orthanc. Ctrl-C stops everything."
                )
                wait_until_stopped(site, stop)
            return 1 if failed else 0
    finally:
        orthanc.close()
        orthanc_process.stop()
