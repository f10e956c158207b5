"""``pacsflow monitor --days N``: the monitoring report, now, from the command line (I/O).

The same report the ``monitoring-daily`` deployment writes every day: JSON and HTML in
``--output`` (default ``[monitoring] output_dir``, else ``<storage_dir>/monitoring``), and
one alert through the escalation channels when a threshold is crossed (``--no-alert``: just
the report). Prints one line per threshold crossed. Exit 0 when none was, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from integrations.db.connection import open_database
from integrations.monitoring.daily import alert_on_report, build_report, output_dir, write_report
from integrations.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "monitor", help="the monitoring report: failures, orphans, backlogs, drift (JSON + HTML)"
    )
    parser.add_argument("--days", type=int, default=1, help="the period, in days (default 1)")
    parser.add_argument("--output", type=Path, help="folder for the JSON and HTML report")
    parser.add_argument("--json", action="store_true", help="print the report's JSON")
    parser.add_argument("--no-alert", action="store_true", help="write the report, send no alert")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = open_database(settings)
    try:
        report = build_report(settings, database, args.days)
        json_path, html_path = write_report(report, args.output or output_dir(settings))
        if not args.no_alert:
            alert_on_report(report, settings, database, report_path=html_path)
    finally:
        database.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        counts = ", ".join(f"{key} {value}" for key, value in report.counts().items())
        print(f"monitoring {report.days} day(s): {counts}")
        for crossing in report.crossings:
            print(f"ALERT level {crossing.level} [{crossing.check}] {crossing.message}")
        print(f"report: {html_path} and {json_path}")
    return 1 if report.crossings else 0
