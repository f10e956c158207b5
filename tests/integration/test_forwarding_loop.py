"""A PACS that forwards everything it stores, our results included, never makes a loop.

A second Orthanc runs the forwarding rule many sites write (``OnStoredInstance`` →
``SendToModality`` to the node). One chest X-ray study goes the whole serve path: Orthanc
forwards it, the node closes it, a warm worker runs process-study, the results go back to
Orthanc, and Orthanc forwards them to the node again. They must be recognised as pacsflow's
own: one SR and one run, still so a minute later and after the whole study is sent again.
"""

from __future__ import annotations

import time

import pytest

from integrations.db.analyses import AnalysisStore
from tests.fix_orthanc import FORWARD_EVERYTHING_LUA, NODE_AE_TITLE
from tests.fix_prefect import flow_runs
from tests.integration.test_end_to_end import CHEST_RULE, orthanc_sr_instances, upload, wait_for
from tests.site import running_node, running_results_sender, running_worker

FORWARDING_PACS = "FWDPACS"
QUIET_AFTER_RESULT_SECONDS = 60.0


def runs_of(prefect_api_url: str, study_uid: str) -> list[dict]:
    from tasks.runtime import get_runtime

    study = get_runtime().store.study(study_uid)  # Prefect knows the study by its key only
    return [
        run
        for run in flow_runs(prefect_api_url, "process-study")
        if study and run["parameters"].get("study_key") == study.study_key
    ]


def own_objects_given_back(site, study_uid: str) -> int:
    with site.database.connection() as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM instances WHERE study_instance_uid = %s AND ours",
            (study_uid,),
        ).fetchone()
    return int(row["n"])


def dispatch_rows(site, study_uid: str) -> list[tuple[int, str]]:
    with site.database.connection() as conn:
        return [
            (row["generation"], row["state"])
            for row in conn.execute(
                "SELECT generation, state FROM dispatch WHERE study_instance_uid = %s ORDER BY id",
                (study_uid,),
            )
        ]


@pytest.mark.slow
def test_a_forward_everything_rule_gives_one_sr_and_one_run(
    settings_factory, node_port, start_orthanc, prefect_api_url, demo_models_dir
):
    from models.phantoms.chest import chest_xray_study

    pacs = start_orthanc(ae_title=FORWARDING_PACS, lua=FORWARD_EVERYTHING_LUA)
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": node_port, "allowed_callers": [FORWARDING_PACS]},
        pacs={
            "ae_title": FORWARDING_PACS,
            "host": "127.0.0.1",
            "port": pacs.dicom_port,
            "timeout_seconds": 10,
        },
        study={"quiet_seconds": 1.0, "poll_seconds": 0.05},
        routing={"rules": [CHEST_RULE]},
        models={"dir": str(demo_models_dir), "device": "cpu"},
    )
    study = chest_xray_study(31, ["Pneumothorax"], accession_number="LOOP-1")
    uid = study.study_instance_uid
    with (
        running_node(settings) as site,
        running_worker(settings),
        running_results_sender(settings),
    ):
        upload(pacs, study.datasets)  # the rule forwards each image to the node
        (sr,) = wait_for(lambda: orthanc_sr_instances(pacs, uid), timeout=120)
        result_at = time.monotonic()
        wait_for(lambda: dispatch_rows(site, uid) == [(1, "completed")], timeout=60)
        # the results sender stores the overlays after the SR
        sent = wait_for(
            lambda: (
                (rows := AnalysisStore(site.database).result_objects(uid))
                and all(row["stored_at"] is not None for row in rows)
                and rows
            ),
            timeout=60,
        )
        # Orthanc forwards every result object back; each is kept as ours
        wait_for(lambda: own_objects_given_back(site, uid) == len(sent), timeout=60)
        # and a PACS user sending the whole study again (images and results) changes nothing
        outcome = pacs.client.send_study("pacsflow", [uid])
        assert outcome["FailedInstancesCount"] == 0
        time.sleep(max(0.0, QUIET_AFTER_RESULT_SECONDS - (time.monotonic() - result_at)))
        srs = orthanc_sr_instances(pacs, uid)
        runs = runs_of(prefect_api_url, uid)
        study_row = site.store.study(uid)
        dispatched = dispatch_rows(site, uid)
        given_back = own_objects_given_back(site, uid)
        with site.database.connection() as conn:
            changed = conn.execute(
                "SELECT count(*) AS n FROM node_events WHERE kind = 'changed_duplicate'"
            ).fetchone()["n"]
    assert [i["ID"] for i in srs] == [sr["ID"]]
    assert len(runs) == 1 and runs[0]["state_type"] == "COMPLETED"
    assert dispatched == [(1, "completed")]
    assert (study_row.state, study_row.generation) == ("done", 1)
    assert given_back == len(sent)
    assert changed == 0
