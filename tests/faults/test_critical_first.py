"""A Critical study behind 20 routine ones while the PACS is down: it is claimed first and
its first page leaves within 60 s of study close (real node, two ``pacsflow worker``
processes, PostgreSQL, Prefect, recording webhook/SMTP peers; the PACS is a closed port)."""

from __future__ import annotations

import importlib.util

import pytest
from pynetdicom import AE

from deployments.orthanc import free_port
from models.phantoms.chest import chest_xray_study
from models.phantoms.msk import msk_study
from tests.faults.workers import start_worker, stop_worker, wait_for, worker_env
from tests.fix_orthanc import NODE_AE_TITLE
from tests.integration.escalation.conftest import escalation_section
from tests.site import running_node

DEADLINE_SECONDS = 60.0
ROUTINE_AHEAD = 20
HAS_RESULTS_OUTBOX = importlib.util.find_spec("integrations.db.results_outbox") is not None


def send(port: int, datasets) -> None:
    ae = AE(ae_title="MODALITY")
    for dataset in datasets:
        ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE_TITLE)
    assert assoc.is_established
    try:
        for dataset in datasets:
            assert assoc.send_c_store(dataset).Status == 0
    finally:
        assoc.release()


def dispatch_states(database) -> dict[str, int]:
    with database.connection() as conn:
        rows = conn.execute("SELECT state, count(*) AS n FROM dispatch GROUP BY state").fetchall()
    return {row["state"]: row["n"] for row in rows}


@pytest.mark.slow
@pytest.mark.skipif(
    not HAS_RESULTS_OUTBOX,
    reason="needs the results outbox (issue 9 item 1): without it a worker waits on the PACS"
    " retries, and the page misses 60 s whenever both workers are in them (bench.escalation)",
)
def test_critical_study_behind_20_routine_pages_within_60_s_while_the_pacs_is_down(
    settings_factory, node_port, prefect_api_url, demo_models_dir, notify_http, notify_smtp,
    tmp_path,
):  # fmt: skip
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": node_port, "allowed_callers": ["MODALITY"]},
        pacs={"port": free_port()},  # nothing listens there: the PACS is down
        study={"quiet_seconds": 1.0, "poll_seconds": 0.05},
        models={"dir": str(demo_models_dir), "device": "cpu"},
        worker={"count": 2},
        routing={
            "rules": [
                {"name": "chest", "modality": ["DX"], "body_part": ["CHEST"],
                 "analyzers": ["chest-xray"]},
                {"name": "ankle", "modality": ["DX", "CR"], "body_part": ["ANKLE"],
                 "analyzers": ["msk-fracture"]},
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
    logs = tmp_path / "workers"
    env = worker_env(settings, prefect_api_url)
    with running_node(settings) as site:
        workers = [start_worker(f"worker-{n}", env, logs) for n in (1, 2)]
        try:
            wait_for(
                lambda: all(
                    "waiting for studies" in (logs / f"worker-{n}.log").read_text(errors="replace")
                    for n in (1, 2)
                ),
                240,
                "both workers ready",
            )
            # sent in one association, faster than any worker analyses them: 20 or more are
            # still waiting when the Critical study closes (checked below)
            routine = ROUTINE_AHEAD + 10
            send(
                site.port,
                [
                    ds
                    for i in range(routine)
                    for ds in msk_study(500 + i, body_part="ANKLE").datasets
                ],
            )
            wait_for(
                lambda: sum(dispatch_states(site.database).values()) == routine,
                120,
                "routine studies closed",
                interval=0.02,
            )
            critical = chest_xray_study(63, ["Tension Pneumothorax"], accession_number="FIRST")
            send(site.port, critical.datasets)
            assert dispatch_states(site.database).get("queued", 0) >= ROUTINE_AHEAD
            hook = wait_for(
                lambda: next(
                    (
                        h
                        for h in notify_http.received("/hooks/surgery")
                        if h.json()["study"]["study_instance_uid"] == critical.study_instance_uid
                    ),
                    None,
                ),
                DEADLINE_SECONDS + 60,
                "the Critical page",
            )
            study = site.store.study(critical.study_instance_uid)
            assert study is not None and study.closed_at is not None
            seconds = hook.received_at - study.closed_at.timestamp()
            print(f"first page {seconds:.1f} s after study close")
            assert seconds < DEADLINE_SECONDS
            with site.database.connection() as conn:
                claimed_before = conn.execute(
                    "SELECT count(*) AS n FROM dispatch d, dispatch c"
                    " WHERE c.study_instance_uid = %s AND d.id <> c.id"
                    " AND d.started_at > c.queued_at AND d.started_at < c.started_at",
                    (critical.study_instance_uid,),
                ).fetchone()["n"]
            assert claimed_before == 0, "a routine study queued earlier was claimed first"
        finally:
            for process in workers:
                stop_worker(process)
