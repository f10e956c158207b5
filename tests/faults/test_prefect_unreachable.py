"""The Prefect API unreachable for 2 minutes (a real TCP link to the test's Prefect server,
cut): a Critical study closed meanwhile still pages within 60 s of study close, and once
Prefect is back its run completes, once, without paging twice (real node, a ``pacsflow
worker`` process, PostgreSQL, Prefect, the demo model, recording webhook/SMTP peers)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from deployments.orthanc import free_port
from models.phantoms.chest import chest_xray_study
from tests.faults.test_critical_first import DEADLINE_SECONDS, dispatch_states, send
from tests.faults.workers import (
    SwitchablePacsLink,
    start_worker,
    stop_worker,
    wait_for,
    worker_env,
)
from tests.fix_orthanc import NODE_AE_TITLE
from tests.integration.escalation.conftest import escalation_section
from tests.site import running_node

PREFECT_DOWN_SECONDS = 120.0


@pytest.mark.slow
def test_critical_study_pages_within_60_s_while_prefect_is_unreachable(
    settings_factory, node_port, prefect_api_url, demo_models_dir, notify_http, notify_smtp,
    tmp_path,
):  # fmt: skip
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": node_port, "allowed_callers": ["MODALITY"]},
        pacs={"port": free_port()},  # results are queued in the outbox; no PACS needed here
        study={"quiet_seconds": 1.0, "poll_seconds": 0.05},
        models={"dir": str(demo_models_dir), "device": "cpu"},
        worker={"count": 1, "lease_seconds": 30},
        routing={
            "rules": [
                {"name": "chest", "modality": ["DX"], "body_part": ["CHEST"],
                 "analyzers": ["chest-xray"]},
            ]
        },
        urgency={
            "rules": [
                {"name": "fault-any-pneumothorax", "labels": ["Pneumothorax"],
                 "min_probability": 0.0, "tier": "Critical"}
            ]
        },
        escalation=escalation_section(
            notify_http,
            notify_smtp,
            rules=[{"name": "fault-pneumothorax", "labels": ["Pneumothorax"], "team": "surgery"}],
        ),
    )  # fmt: skip
    prefect = urlsplit(prefect_api_url)
    logs = tmp_path / "workers"
    with (
        SwitchablePacsLink(prefect.port or 80) as link,
        running_node(settings) as site,
    ):
        link.forwarding = True
        env = worker_env(settings, f"http://127.0.0.1:{link.port}{prefect.path}")
        worker = start_worker("worker-1", env, logs)
        try:
            # a first study while Prefect is up: the worker is serving, its API connections open
            routine = chest_xray_study(65, [], accession_number="PREFECTUP")
            send(site.port, routine.datasets)
            wait_for(
                lambda: dispatch_states(site.database) == {"completed": 1},
                300,
                "the first study's run completed",
            )
            link.cut()  # the Prefect API is unreachable from here on
            cut_at = time.monotonic()
            critical = chest_xray_study(64, ["Tension Pneumothorax"], accession_number="NOPREFECT")
            send(site.port, critical.datasets)

            def pages() -> list:
                return [
                    h
                    for h in notify_http.received("/hooks/surgery")
                    if h.json()["study"]["study_instance_uid"] == critical.study_instance_uid
                ]

            hook = wait_for(lambda: next(iter(pages()), None), DEADLINE_SECONDS + 60, "the page")
            study = site.store.study(critical.study_instance_uid)
            assert study is not None and study.closed_at is not None
            seconds = hook.received_at - study.closed_at.timestamp()
            print(f"first page {seconds:.1f} s after study close, Prefect unreachable")
            assert seconds < DEADLINE_SECONDS
            with site.database.connection() as conn:
                waiting = conn.execute(
                    "SELECT state FROM dispatch WHERE study_instance_uid = %s",
                    (critical.study_instance_uid,),
                ).fetchall()
            assert [row["state"] for row in waiting] in (["queued"], ["running"])
            time.sleep(max(0.0, PREFECT_DOWN_SECONDS - (time.monotonic() - cut_at)))
            link.forwarding = True  # Prefect is back
            wait_for(
                lambda: dispatch_states(site.database) == {"completed": 2},
                180,
                "the study's run completed once Prefect is back",
            )
            with site.database.connection() as conn:
                dispatch = conn.execute(
                    "SELECT state, flow_run_id FROM dispatch WHERE study_instance_uid = %s",
                    (critical.study_instance_uid,),
                ).fetchall()
                analyses = conn.execute(
                    "SELECT count(*) AS n FROM analyses WHERE study_instance_uid = %s",
                    (critical.study_instance_uid,),
                ).fetchone()["n"]
                escalations = conn.execute(
                    "SELECT finding, count(*) AS n FROM escalations WHERE study_instance_uid = %s"
                    " GROUP BY finding",
                    (critical.study_instance_uid,),
                ).fetchall()
                reports = conn.execute(
                    "SELECT sop_instance_uid, count(*) AS n FROM results_outbox"
                    " WHERE part = 'report' AND state <> 'superseded' AND study_instance_uid = %s"
                    " GROUP BY 1",
                    (critical.study_instance_uid,),
                ).fetchall()
        finally:
            stop_worker(worker)
            print((logs / "worker-1.log").read_text(errors="replace")[-6000:])
    assert [row["state"] for row in dispatch] == ["completed"]
    assert dispatch[0]["flow_run_id"] is not None  # the run is in Prefect after all
    assert analyses == 1
    assert reports and all(row["n"] == 1 for row in reports)
    print("escalations:", escalations)
    # the rerun did not open (and page) a finding again
    assert escalations and all(row["n"] == 1 for row in escalations)
