"""``pacsflow rerun STUDY_UID``: queue a new run of a study (results replace, never duplicate)."""

from __future__ import annotations

import argparse

from integrations.db.connection import open_database
from integrations.db.store import StudyStore
from integrations.dicom.uids import validate_uid
from integrations.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rerun", help="queue a study for processing again")
    parser.add_argument("study_instance_uid", help="Study Instance UID")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    uid = validate_uid(args.study_instance_uid, "Study Instance UID")
    settings = load_settings(args.config)
    database = open_database(settings)
    try:
        try:
            queued = StudyStore(database).request_rerun(uid)
        except KeyError:
            print(f"study {uid} is not known to this node")
            return 1
    finally:
        database.close()
    if queued is None:
        print(f"study {uid} already has a run waiting")
    else:
        print(f"study {uid} queued (dispatch {queued})")
    return 0
