"""``pacsflow demo``: placeholder until the demo studies land."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the demo site with a local Orthanc and demo studies"
    )
    parser.add_argument("--once", action="store_true", help="exit after the results table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError
