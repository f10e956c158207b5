"""``pacsflow doctor [--json]``: every go-live check, one line each, with the fix (I/O).

Prints ``PASS``/``WARN``/``FAIL``/``SKIP`` per check with the measured value, and for every
FAIL or WARN the fix in words. Exits 0 when nothing failed, 1 otherwise. ``--json`` prints
one JSON object (``{"ok": ..., "checks": [...]}``) for monitoring systems instead.
"""

from __future__ import annotations

import argparse
import json
import logging

from integrations.doctor.checks import exit_status
from integrations.doctor.runner import run_doctor


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check the configuration and every peer (PACS both ways, HL7, FHIR, LDAP, syslog,"
        " database, models, disk); exit 1 on any failure",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object for machines")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # A refused connection is a finding on the report, not an error line from pynetdicom.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # --log-level debug keeps them
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    results = run_doctor(args.config)
    status = exit_status(results)
    if args.json:
        print(json.dumps({"ok": status == 0, "checks": [r.to_json() for r in results]}, indent=2))
    else:
        for result in results:
            print(result.line())
        failures = sum(result.verdict.value == "FAIL" for result in results)
        print(
            f"{len(results)} checks, {failures} failed"
            if failures
            else f"{len(results)} checks, none failed"
        )
    return status
