"""``pacsflow find ACCESSION|STUDY_UID|MRN|KEY``: a study's key and its Prefect runs (I/O).

Prefect carries no patient data, so an operator who has an accession number, a Study
Instance UID or an MRN (from a ward's phone call, the RIS) needs this to find the study's
runs in the Prefect UI. It reads pacsflow's database, which holds the patient data: run it
only as an operator authorised to see it. The output names no patient, only keys and links.
"""

from __future__ import annotations

import argparse

import httpx

from deployments.prefect_urls import api_url, flow_run_url, ui_url
from integrations.db.connection import open_database
from integrations.db.store import StudyStore
from integrations.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "find", help="map an accession number, Study Instance UID or MRN to study keys and runs"
    )
    parser.add_argument("term", help="accession number, Study Instance UID, patient ID or key")
    parser.set_defaults(handler=run)


def prefect_runs(api: str, study_key: str) -> list[dict]:
    """The Prefect flow runs named after the key (runs started from the UI too), newest first."""
    try:
        response = httpx.post(
            f"{api}/flow_runs/filter",
            json={
                "flow_runs": {"name": {"like_": study_key}},
                "sort": "EXPECTED_START_TIME_DESC",
                "limit": 20,
            },
            timeout=5,
        )
        response.raise_for_status()
    except httpx.HTTPError:
        return []
    return response.json()


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = open_database(settings)
    try:
        found = StudyStore(database).find_studies(args.term)
    finally:
        database.close()
    if not found:
        print(f"no study matches {args.term!r}")
        return 1
    api, ui = api_url(settings), ui_url(settings)
    for study, dispatched in found:
        print(f"{study.study_key}  {study.run_name}  state {study.state}")
        runs = {run["id"]: run for run in prefect_runs(api, study.study_key)}
        ids = list(dict.fromkeys([*dispatched, *runs]))
        if not ids:
            print("  no Prefect run yet")
        for run_id in ids:
            state = runs.get(run_id, {}).get("state_name", "")
            print(f"  {flow_run_url(ui, run_id)}  {state}".rstrip())
    return 0
