"""What each result UID contains, in PostgreSQL: superseded records, one live SR, no UID reuse."""

from __future__ import annotations

import psycopg
import pytest

from integrations.db.analyses import AnalysisStore, BuiltObject
from integrations.errors import StoreError
from tests.integration.emr.helpers import insert_study

STUDY = "1.2.826.0.1.3680043.8.498.9001"


def sr(uid: str, sha: str, digest: str = "d1") -> BuiltObject:
    return BuiltObject(
        uid, "2.25.77", "1.2.840.10008.5.1.4.1.1.88.34", "sr", f"/r/{uid}", sha, digest
    )


def record(store: AnalysisStore, *objects: BuiltObject) -> None:
    store.record_built(
        study_instance_uid=STUDY,
        analyzer="chest-xray",
        model_version="1.0",
        generation=1,
        objects=list(objects),
        replaces_kinds=["sr"],
        superseded_by=objects[0].sop_instance_uid,
    )


def rows(store: AnalysisStore) -> dict[str, dict]:
    return {row["sop_instance_uid"]: row for row in store.result_objects(STUDY)}


def test_a_new_sr_supersedes_the_live_one_and_a_uid_never_names_two_contents(database):
    insert_study(database, STUDY, "0012345")
    store = AnalysisStore(database)
    record(store, sr("2.25.1", "aaa"))
    store.mark_stored(["2.25.1"])
    # rebuilt with the same content: still live, still stored (nothing to send again)
    record(store, sr("2.25.1", "aaa"))
    assert rows(store)["2.25.1"]["stored_at"] is not None
    # changed inputs: a new SR, the old one superseded by it
    record(store, sr("2.25.2", "bbb", digest="d2"))
    found = rows(store)
    assert (found["2.25.1"]["status"], found["2.25.1"]["superseded_by"]) == ("superseded", "2.25.2")
    assert (found["2.25.2"]["status"], found["2.25.2"]["content_sha256"]) == ("final", "bbb")
    assert store.live_report(STUDY, "chest-xray")["sop_instance_uid"] == "2.25.2"
    assert store.replaced_report("2.25.2")["sop_instance_uid"] == "2.25.1"
    # the same UID with another content is refused, and nothing changes
    with pytest.raises(StoreError, match="different content"):
        record(store, sr("2.25.2", "ccc", digest="d2"))
    assert rows(store) == found
    # and the database itself never holds two live SRs for a study and analyzer
    with database.connection() as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "UPDATE result_objects SET status = 'final', superseded_by = NULL"
            " WHERE sop_instance_uid = '2.25.1'"
        )
