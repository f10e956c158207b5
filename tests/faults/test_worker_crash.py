"""A worker SIGKILLed in the middle of a study's run: another worker finishes the study
within 30 s, the killed run is Crashed in Prefect (never left RUNNING), and one SR and one
page come out of it (real PostgreSQL, Prefect, Orthanc, recording webhook/SMTP peers)."""

from __future__ import annotations

import io
import time

import httpx
import pytest

from integrations.db.escalations import EscalationStore
from models.phantoms.chest import chest_xray_study
from tests.faults.workers import (
    SwitchablePacsLink,
    start_worker,
    stop_worker,
    wait_for,
    worker_env,
)
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE
from tests.integration.escalation.conftest import escalation_section
from tests.site import running_node

RECLAIM_LIMIT_SECONDS = 30.0


def dispatch_row(database, study_uid: str):
    with database.connection() as conn:
        return conn.execute(
            "SELECT *, clock_timestamp() AS now FROM dispatch WHERE study_instance_uid = %s"
            " ORDER BY id DESC LIMIT 1",
            (study_uid,),
        ).fetchone()


def prefect_state(api_url: str, flow_run_id) -> dict:
    response = httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=10)
    response.raise_for_status()
    return response.json()["state"]


def sr_instances(orthanc, study_uid: str) -> int:
    return sum(
        len(series["Instances"])
        for series in orthanc.client.series_of(study_uid)
        if series["MainDicomTags"].get("Modality") == "SR"
    )


def pneumothorax_pages(http) -> list:
    return [
        h for h in http.received("/hooks/surgery") if h.json()["finding"]["label"] == "Pneumothorax"
    ]


@pytest.mark.slow
def test_sigkilled_worker_study_is_finished_by_another_with_one_sr_and_one_page(
    settings_factory,
    clean_orthanc,
    prefect_api_url,
    demo_models_dir,
    notify_http,
    notify_smtp,
    tmp_path,
):
    settings = settings_factory(
        node={
            "ae_title": NODE_AE_TITLE,
            "port": clean_orthanc.node_port,
            "allowed_callers": [PACS_AE_TITLE],
        },
        pacs={"ae_title": PACS_AE_TITLE, "port": clean_orthanc.dicom_port},
        study={"quiet_seconds": 1.0},
        models={"dir": str(demo_models_dir), "device": "cpu"},
        routing={
            "rules": [
                {"name": "chest", "modality": ["DX"], "body_part": ["CHEST"],
                 "analyzers": ["chest-xray"]}
            ]
        },
        urgency={
            "rules": [
                {"name": "crash-any-pneumothorax", "labels": ["Pneumothorax"],
                 "min_probability": 0.0, "tier": "Critical"}
            ]
        },
        escalation=escalation_section(
            notify_http,
            notify_smtp,
            rules=[{"name": "crash-pneumothorax", "labels": ["Pneumothorax"], "team": "surgery"}],
        ),
    )  # fmt: skip
    assert (settings.worker.lease_seconds, settings.worker.heartbeat_seconds) == (15.0, 5.0)
    study = chest_xray_study(62, ["Tension Pneumothorax"], accession_number="CRASH-1")
    for dataset in study.datasets:
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        clean_orthanc.client.upload(buffer.getvalue())
    study_uid = study.study_instance_uid
    logs = tmp_path / "workers"

    # Both workers reach the PACS through a link that first hangs: whichever claims the study
    # is still in its run (priors, results) when the page is out, and is killed there; then
    # the link forwards again, and the other worker must finish the study.
    with SwitchablePacsLink(clean_orthanc.dicom_port) as link, running_node(settings) as site:
        env = worker_env(settings, prefect_api_url, PACSFLOW_PACS__PORT=str(link.port))
        workers = {name: start_worker(name, env, logs) for name in ("worker-a", "worker-b")}
        # results reach the PACS through the results outbox and its sender
        sender = start_worker("results-sender", env, logs, ("results-sender",))
        try:
            assert (
                clean_orthanc.client.send_study("pacsflow", [study_uid])["FailedInstancesCount"]
                == 0
            )
            claimed = wait_for(
                lambda: (
                    (row := dispatch_row(site.database, study_uid)) and row["flow_run_id"] and row
                ),
                120,
                "a worker claims the study",
            )
            victim = claimed["worker"]
            survivor = next(name for name in workers if name != victim)
            lost_run_id = claimed["flow_run_id"]
            wait_for(lambda: pneumothorax_pages(notify_http), 90, "the page")
            before = dispatch_row(site.database, study_uid)
            assert (before["state"], before["worker"]) == ("running", victim)
            workers[victim].kill()
            workers[victim].wait(10)
            killed_at = dispatch_row(site.database, study_uid)["now"]
            link.forwarding = True
            assert prefect_state(prefect_api_url, lost_run_id)["type"] == "RUNNING"

            reclaimed = wait_for(
                lambda: (
                    (row := dispatch_row(site.database, study_uid))
                    and row["worker"] == survivor
                    and row
                ),
                RECLAIM_LIMIT_SECONDS + 10,
                "the other worker re-claims the study",
            )
            reclaim_seconds = (reclaimed["started_at"] - killed_at).total_seconds()
            assert reclaim_seconds < RECLAIM_LIMIT_SECONDS, reclaim_seconds
            done = wait_for(
                lambda: (
                    (row := dispatch_row(site.database, study_uid))
                    and row["state"] in ("completed", "failed")
                    and row
                ),
                120,
                "the other worker finishes the study",
            )
            assert done["state"] == "completed", done["error"]
            finished_seconds = (done["finished_at"] - killed_at).total_seconds()
            print(
                f"re-claimed {reclaim_seconds:.1f} s, finished {finished_seconds:.1f} s after the kill"
            )

            # the heartbeat that re-queued the study sets the run Crashed right after
            lost = wait_for(
                lambda: (
                    (state := prefect_state(prefect_api_url, lost_run_id))["type"] == "CRASHED"
                    and state
                ),
                15,
                "the killed run is Crashed",
            )
            assert lost["message"] == (
                f"worker {victim} stopped (heartbeat lost); the study was re-queued"
            )
            assert prefect_state(prefect_api_url, done["flow_run_id"])["type"] == "COMPLETED"
            assert done["flow_run_id"] != lost_run_id

            wait_for(lambda: sr_instances(clean_orthanc, study_uid), 60, "the SR in Orthanc")
            time.sleep(2.0)  # anything late would arrive now
            assert sr_instances(clean_orthanc, study_uid) == 1
            assert len(pneumothorax_pages(notify_http)) == 1
            records = [
                r for r in EscalationStore(site.database).for_study(study_uid)
                if r.finding == "Pneumothorax"
            ]  # fmt: skip
            assert len(records) == 1
            with site.database.connection() as conn:
                analyses = conn.execute(
                    "SELECT analyzer FROM analyses WHERE study_instance_uid = %s", (study_uid,)
                ).fetchall()
                state = conn.execute(
                    "SELECT state FROM studies WHERE study_instance_uid = %s", (study_uid,)
                ).fetchone()["state"]
            assert [row["analyzer"] for row in analyses] == ["chest-xray"]
            assert state == "done"
        finally:
            for process in [*workers.values(), sender]:
                stop_worker(process)
