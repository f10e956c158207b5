"""``pacsflow demo``: the whole site on embedded defaults, a local Orthanc as the PACS (I/O).

What it does, in order: installs the demo model packages when missing (trained on generated
images; not for clinical use), starts Orthanc with the node registered as a modality, a demo
EMR (MLLP) and a demo on-call inbox (SMTP), starts ``pacsflow serve`` (embedded PostgreSQL,
Prefect server and UI, node, warm worker, EMR sender, escalation service), uploads generated
demo studies to Orthanc and has Orthanc send them to the node, waits until the results are
back in Orthanc, prints a table, and keeps running until Ctrl-C (``--once`` stops after the
table).
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
from deployments.demo_peers import DemoEmr, DemoInbox
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
    closed_at: float | None = None  # epoch seconds
    emr_seconds: float | None = None  # close -> ORU acknowledged by the EMR
    paged_seconds: float | None = None  # close -> on-call mail received
    paged_to: tuple[str, ...] = ()  # who the pages went to (the mailbox names)


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
            study.description,
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
                if study["closed_at"]:
                    outcome.closed_at = study["closed_at"].timestamp()
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


def note_deliveries(outcomes: list[Outcome], emr: DemoEmr | None, inbox: DemoInbox | None) -> None:
    """When each study's ORU reached the demo EMR and its page reached the demo inbox."""
    for outcome in outcomes:
        accession = outcome.study.accession_number
        if outcome.closed_at is None or not accession:
            continue
        if emr is not None:
            results = [m for m in emr.recorder.matching(accession) if m.kind == "ORU^R01"]
            if results:
                outcome.emr_seconds = min(m.at for m in results) - outcome.closed_at
        if inbox is not None:  # pages carry no accession: the Study UID names the study
            pages = inbox.recorder.matching(outcome.study.study_instance_uid)
            if pages:
                outcome.paged_seconds = min(m.at for m in pages) - outcome.closed_at
                outcome.paged_to = tuple(
                    sorted({address.split("@")[0] for m in pages for address in m.to})
                )


def _findings_text(analyses: list[dict[str, Any]], most: int = 3) -> str:
    """The most urgent, most probable positive findings, then how many more."""
    parts = []
    for analysis in analyses:
        summary = analysis["summary"] or {}
        if summary.get("status") == "not_analysable":
            parts.append(f"not analysable: {summary.get('reason')}")
        positives = summary.get("positive", [])
        ranked = sorted(
            positives,
            key=lambda f: (["Critical", "Urgent", "Routine"].index(f["tier"]), -f["probability"]),
        )
        parts.extend(f"{f['label']} {f['probability']:.2f}" for f in ranked[:most])
        if len(ranked) > most:
            parts.append(f"+{len(ranked) - most} more")
    return ", ".join(parts) or "no finding"


def print_table(outcomes: list[Outcome], site_ui: str, orthanc_url: str) -> None:
    table = Table(
        title="pacsflow demo — demo weights trained on generated images; not for clinical use"
    )
    for column in (
        "accession",
        "study",
        "drawn in phantom",
        "AI findings",
        "urgency",
        "results in PACS",
        "ORU in EMR",
        "paged",
    ):
        table.add_column(column)
    for outcome in outcomes:
        stored = (
            f"+{outcome.close_to_stored_seconds:.1f} s ({outcome.result_objects} objects)"
            if outcome.close_to_stored_seconds is not None
            else outcome.state
        )
        table.add_row(
            outcome.study.accession_number,
            outcome.study.description,
            ", ".join(sorted(outcome.study.phantom.labels)) or "normal",
            outcome.findings,
            outcome.tier,
            stored,
            f"+{outcome.emr_seconds:.1f} s" if outcome.emr_seconds is not None else "",
            (
                f"+{outcome.paged_seconds:.1f} s ({', '.join(outcome.paged_to)})"
                if outcome.paged_seconds is not None
                else ""
            ),
        )
    console = Console(width=max(160, Console().width))
    console.print(table)
    console.print(f"Prefect UI (one flow run per study): {site_ui}")
    console.print(
        f"Orthanc (the demo PACS, results as new series): {orthanc_url}/app/explorer.html"
    )


def start_demo_peers(settings: Settings) -> tuple[DemoEmr | None, DemoInbox | None]:
    """The demo's EMR and on-call inbox, where the demo configuration points EMR and escalation."""
    emr = inbox = None
    if settings.emr.enabled:
        emr = DemoEmr(settings.emr.host, settings.emr.port)
        emr.start()
    if settings.escalation.teams:
        try:
            inbox = DemoInbox(settings.escalation.smtp_host, settings.escalation.smtp_port)
        except ImportError:
            log.warning("aiosmtpd is not installed: no demo inbox, pages will be retried")
        else:
            inbox.start()
    return emr, inbox


def prepare_models(settings: Settings) -> None:
    """Build the demo packages the routing names. They are not for clinical use: the demo's
    configuration must say so explicitly (pacsflow.toml does)."""
    from models.demo import ensure_demo_packages

    if not (settings.models.allow_non_clinical and settings.models.build_demo_if_missing):
        raise ConfigError(
            "the demo runs demo model packages (not for clinical use): its configuration must"
            " set [models] build_demo_if_missing = true and allow_non_clinical = true, as"
            " pacsflow.toml does"
        )

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
    # The console shows what `pacsflow serve` shows: study state changes, warnings, errors
    # (`--log-level warning` for less). PREFECT_LOGGING_LEVEL stays INFO: it also decides
    # what the task logs in the Prefect UI say.
    stop = stop_event()
    emr, inbox = start_demo_peers(settings)
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
            time.sleep(settings.emr.poll_seconds + 1.0)  # let the last ORU and page arrive
            note_deliveries(outcomes, emr, inbox)
            failed = [o for o in outcomes if o.state != "done"]
            if args.once:
                ui_url = site.prefect_ui_url
            else:
                print_table(outcomes, site.prefect_ui_url, orthanc_process.url)
                print(
                    "pacsflow keeps running; send more studies from Orthanc. Ctrl-C stops everything."
                )
                wait_until_stopped(site, stop)
                return 1 if failed else 0
        # --once: everything has stopped, the table is the last thing on the screen
        print_table(outcomes, ui_url + " (stopped with --once)", orthanc_process.url)
        return 1 if failed else 0
    finally:
        orthanc.close()
        orthanc_process.stop()
        for peer in (emr, inbox):
            if peer is not None:
                peer.stop()
