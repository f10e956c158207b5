"""``pacsflow worklist``: the AI worklist as a table, Critical first, then by study close (I/O)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from integrations.db.connection import open_database
from integrations.db.worklist import WorklistStore
from integrations.settings import load_settings
from models.results import NOT_FOR_CLINICAL_USE

TIER_STYLE = {"Critical": "bold white on red", "Urgent": "bold yellow", "Routine": "green"}
ESCALATION_STYLE = {
    "undelivered": "bold red",
    "exhausted": "bold red",
    "unroutable": "bold red",
    "unacknowledged": "yellow",
    "acknowledged": "green",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worklist", help="print the AI worklist (Critical first, then by study close time)"
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
    parser.add_argument(
        "--tier", choices=["Critical", "Urgent", "Routine"], help="only studies of this tier"
    )
    parser.add_argument("--open", action="store_true", help="hide studies already read")
    parser.add_argument("--names", action="store_true", help="show patient names")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")


def _age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _escalation(row: dict[str, Any]) -> str:
    state = row.get("escalation_state")
    if not state:
        return ""
    if state == "acknowledged":
        return f"ack {row.get('acknowledged_by') or ''}".strip()
    seconds = row.get("first_notification_seconds")
    suffix = f" ({seconds:.0f}s)" if seconds is not None else ""
    return f"{state}{suffix}"


def table(rows: Sequence[dict[str, Any]], *, names: bool, now: datetime) -> Table:
    result = Table(title="pacsflow AI worklist", header_style="bold", expand=False)
    for column in (
        "#",
        "Tier",
        "Closed",
        "Waiting",
        "Accession",
        "Patient",
        "Ward",
        "Mod",
        "Primary finding",
        "Rule",
        "Status",
        "Escalation",
    ):
        result.add_column(column, overflow="fold")
    # Rows from non-clinical models (only where [models] allow_non_clinical) get a column
    # of their own, so the warning sits on the row's line whatever else the row holds.
    marked = any_non_clinical(rows)
    if marked:
        result.add_column("Clinical use", no_wrap=True)
    for index, row in enumerate(rows, start=1):
        tier = row.get("tier") or "—"
        closed = row.get("closed_at")
        probability = row.get("primary_probability")
        finding = row.get("primary_finding") or ""
        if finding and probability is not None:
            finding = f"{finding} ({probability:.0%})"
        patient = row.get("patient_id") or ""
        if names and row.get("patient_name"):
            patient = f"{patient} {row['patient_name']}"
        escalation = _escalation(row)
        result.add_row(
            str(index),
            f"[{TIER_STYLE.get(tier, '')}]{tier}[/]" if tier in TIER_STYLE else tier,
            closed.astimezone().strftime("%Y-%m-%d %H:%M:%S") if closed else "",
            _age(closed, now) if row.get("status") != "read" else "",
            row.get("accession_number") or "",
            patient,
            row.get("patient_location") or "",
            row.get("modality") or "",
            finding,
            row.get("tier_rule") or "",
            row.get("status") or "",
            f"[{ESCALATION_STYLE.get(row.get('escalation_state') or '', '')}]{escalation}[/]"
            if escalation
            else "",
            *([_clinical_use(row)] if marked else []),
        )
    return result


def any_non_clinical(rows: Sequence[dict[str, Any]]) -> bool:
    return any(row.get("clinical_use") is False for row in rows)


def _clinical_use(row: dict[str, Any]) -> str:
    return f"[bold red]{NOT_FOR_CLINICAL_USE}[/]" if row.get("clinical_use") is False else ""


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = open_database(settings)
    try:
        rows = WorklistStore(database).rows(args.limit, include_read=not args.open, tier=args.tier)
    finally:
        database.close()
    if args.json:
        for row in rows:
            if not args.names:
                row.pop("patient_name", None)
            print(json.dumps(row, default=str, sort_keys=True))
        return 0
    width = max(160, Console().width) + (len(NOT_FOR_CLINICAL_USE) + 3) * any_non_clinical(rows)
    console = Console(width=width)
    if not rows:
        console.print("The worklist is empty.")
        return 0
    console.print(table(rows, names=args.names, now=datetime.now(UTC)))
    if any_non_clinical(rows):
        console.print(
            f"[bold red]{NOT_FOR_CLINICAL_USE}[/]: rows so marked come from demo or research"
            " models ([models] allow_non_clinical = true)."
        )
    return 0
