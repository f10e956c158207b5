"""``pacsflow runner``: serve pacsflow's flow deployments with a Prefect Runner."""

from __future__ import annotations

import argparse
import logging

from deployments.catalog import runner_deployments

log = logging.getLogger("pacsflow.runner")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("runner", help="serve the flow deployments (Prefect Runner)")
    parser.add_argument(
        "--with-process-study",
        action="store_true",
        help="also serve process-study (when no warm worker runs at this site)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from prefect import serve

    specs = runner_deployments(include_process_study=args.with_process_study)
    if not specs:
        log.info("no deployments for the runner to serve")
        return 0
    deployments = [
        spec.load_flow().to_deployment(
            name=spec.name, description=spec.description, cron=spec.cron or None
        )
        for spec in specs
    ]
    log.info("serving %s", ", ".join(spec.name for spec in specs))
    serve(*deployments, print_starting_message=False)
    return 0
