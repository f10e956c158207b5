"""``pacsflow rerun KEY|STUDY_UID``: queue a new run of a study (results replace, never duplicate)."""

from __future__ import annotations

import argparse

from integrations.db.connection import open_database
from integrations.db.store import StudyStore
from integrations.dicom.uids import validate_uid
from integrations.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rerun", help="queue a study for processing again")
    parser.add_argument("study", help="study key (S…, from `pacsflow find`) or Study Instance UID")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = open_database(settings)
    store = StudyStore(database)
    try:
        if "." in args.study:
            uid = validate_uid(args.study, "Study Instance UID")
            study = store.study(uid)
        else:
            study = store.study_by_key(args.study)
        if study is None:
            print(f"study {args.study} is not known to this node")
            return 1
        queued = store.request_rerun(study.study_instance_uid)
    finally:
        database.close()
    if queued is None:
        print(f"study {study.study_key} already has a run waiting")
    else:
        print(f"study {study.study_key} queued (dispatch {queued})")
    return 0
