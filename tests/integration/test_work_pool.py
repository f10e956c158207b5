"""The work-pool route against a real Prefect process worker: the node closes a study, the
dispatcher makes it a scheduled process-study run on the work pool, a plain
``prefect worker start --pool ... --type process`` executes it, the SR lands in Orthanc."""

from __future__ import annotations

import contextvars
import os
import statistics
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from flows.dispatch import WorkPoolDispatcher
from integrations.settings import settings_environment
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE
from tests.integration.test_end_to_end import (
    CHEST_RULE,
    orthanc_sr_instances,
    upload,
    wait_for,
)
from tests.site import running_node, running_results_sender

REPO_ROOT = Path(__file__).resolve().parents[2]
STUDIES = 3


@pytest.fixture
def pool_settings(settings_factory, node_port, orthanc, prefect_api_url, demo_models_dir):
    return settings_factory(
        node={
            "ae_title": NODE_AE_TITLE,
            "port": node_port,
            "allowed_callers": [PACS_AE_TITLE, "MODALITY"],
        },
        pacs={
            "ae_title": PACS_AE_TITLE,
            "host": "127.0.0.1",
            "port": orthanc.dicom_port,
            "timeout_seconds": 10,
        },
        study={"quiet_seconds": 1.0, "poll_seconds": 0.05},
        routing={"rules": [CHEST_RULE]},
        models={"dir": str(demo_models_dir), "device": "cpu"},
        worker={"count": 0, "work_pool": f"test-pool-{uuid.uuid4().hex[:8]}"},
        hl7={"enabled": False},
        emr={"enabled": False},
    )


def process_worker(settings, prefect_api_url: str, home: Path) -> subprocess.Popen:
    """A plain Prefect process worker on the pool, with the site's settings in its env."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PACSFLOW_", "PREFECT_"))
    }
    env.update(settings_environment(settings))
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "PREFECT_API_URL": prefect_api_url,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",  # default 10: the pool's pick-up latency
            "OMP_WAIT_POLICY": "PASSIVE",
        }
    )
    log = open(home / "worker.log", "wb")  # noqa: SIM115 - the process owns it
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            settings.worker.work_pool,
            "--type",
            "process",
            "--limit",
            "2",
        ],
        env=env,
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def dispatch_rows(store, study_uid):
    with store.database.connection() as conn:
        return conn.execute(
            "SELECT d.id, d.state, d.worker, d.flow_run_id, d.error,"
            " EXTRACT(EPOCH FROM ((SELECT max(r.stored_at) FROM result_objects r"
            "   WHERE r.study_instance_uid = d.study_instance_uid AND r.kind = 'sr')"
            "   - st.closed_at)) AS close_to_sr"
            " FROM dispatch d JOIN studies st USING (study_instance_uid)"
            " WHERE d.study_instance_uid = %s ORDER BY d.id",
            (study_uid,),
        ).fetchall()


@pytest.mark.slow
def test_closed_studies_run_on_a_plain_prefect_process_worker(
    pool_settings, clean_orthanc, prefect_api_url, tmp_path
):
    from models.phantoms.chest import chest_xray_study

    settings = pool_settings
    assert settings.worker.uses_work_pool and settings.worker.warm_count == 0
    studies = [
        chest_xray_study(40 + index, ["Pneumothorax"], accession_number=f"WP-{index}")
        for index in range(STUDIES)
    ]
    for study in studies:
        upload(clean_orthanc, study.datasets)
    worker = process_worker(settings, prefect_api_url, tmp_path)
    stop = threading.Event()
    with running_node(settings) as site, running_results_sender(settings):
        dispatcher = WorkPoolDispatcher(site.store, settings)
        thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(dispatcher.run_forever, stop),
            daemon=True,
        )
        thread.start()
        try:
            latencies = []
            for study in studies:
                uid = study.study_instance_uid
                outcome = clean_orthanc.client.send_study("pacsflow", [uid])
                assert outcome["FailedInstancesCount"] == 0
                srs = wait_for(lambda uid=uid: orthanc_sr_instances(clean_orthanc, uid), 240)
                assert len(srs) == 1
                rows = wait_for(
                    lambda uid=uid: [
                        r for r in dispatch_rows(site.store, uid) if r["state"] == "completed"
                    ],
                    60,
                )
                (row,) = rows  # one dispatch row, one run, executed once
                assert row["worker"] == f"work-pool:{settings.worker.work_pool}"
                latencies.append(float(row["close_to_sr"]))
                run = httpx.get(f"{prefect_api_url}/flow_runs/{row['flow_run_id']}").json()
                assert run["state_type"] == "COMPLETED"
                assert run["work_pool_name"] == settings.worker.work_pool
                assert run["parameters"] == {"study_key": site.store.study(uid).study_key}
            print(
                f"\nwork-pool route, study close -> SR stored: {latencies} s,"
                f" median {statistics.median(latencies):.2f} s"
            )
            # every run of the deployment came from one dispatch row each: none twice
            runs = httpx.post(
                f"{prefect_api_url}/flow_runs/filter",
                json={"work_pools": {"name": {"any_": [settings.worker.work_pool]}}},
            ).json()
            assert len(runs) == STUDIES
        finally:
            stop.set()
            thread.join(10)
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
