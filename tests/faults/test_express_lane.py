"""A chest radiograph does not wait behind long studies that every other worker holds: with
the express lane (one general and one express ``pacsflow worker`` process, real node,
PostgreSQL, Prefect, the demo models, recording webhook/SMTP peers), a Critical radiograph
that closes while two long head CTs are queued or running is analysed and paged at once, and
the express worker never takes a CT."""

from __future__ import annotations

import psutil
import pytest

from deployments.orthanc import free_port
from models.phantoms.chest import chest_xray_study
from models.phantoms.head_ct import head_ct_study
from tests.faults.paging import (
    DEADLINE_SECONDS,
    dispatch_states,
    fault_settings,
    seconds_to_first_page,
    send,
)
from tests.faults.workers import start_worker, stop_worker, wait_for, worker_env
from tests.site import running_node

CT_SLICES = 120  # long enough that both CTs are still being analysed when the X-ray closes


def dispatch_rows(database, study_instance_uid: str) -> list[dict]:
    with database.connection() as conn:
        return conn.execute(
            "SELECT worker, state, started_at, finished_at, image_count FROM dispatch"
            " WHERE study_instance_uid = %s ORDER BY id",
            (study_instance_uid,),
        ).fetchall()


@pytest.mark.slow
def test_a_critical_radiograph_is_paged_while_long_studies_hold_the_general_worker(
    settings_factory, node_port, prefect_api_url, demo_models_dir, notify_http, notify_smtp,
    tmp_path,
):  # fmt: skip
    settings = fault_settings(
        settings_factory, node_port, demo_models_dir, notify_http, notify_smtp,
        worker={"count": 2},  # the default lane: one express worker of the two
        rules=[{"name": "head-ct", "modality": ["CT"], "body_part": ["HEAD"],
                "analyzers": ["head-ct-ich"]}],
        pacs={"port": free_port()},  # results are queued in the outbox; no PACS needed here
    )  # fmt: skip
    assert settings.worker.express_count == 1
    logs = tmp_path / "workers"
    env = worker_env(settings, prefect_api_url)
    cts = [head_ct_study(700 + n, slices=CT_SLICES, spacing_mm=1.25) for n in range(2)]
    with running_node(settings) as site:
        workers = [
            start_worker("worker-1", env, logs),
            start_worker("express-1", env, logs, ("worker", "--express", "--name", "express-1")),
        ]
        try:
            wait_for(
                lambda: all(
                    "waiting for studies" in (logs / f"{name}.log").read_text(errors="replace")
                    for name in ("worker-1", "express-1")
                ),
                240,
                "both workers ready",
            )
            # under CPU contention the express worker is scheduled first
            base = psutil.Process().nice()
            assert psutil.Process(workers[0].pid).nice() == base + settings.worker.general_nice
            assert psutil.Process(workers[1].pid).nice() == base
            for ct in cts:
                send(site.port, ct.datasets)
            wait_for(
                lambda: (
                    dispatch_states(site.database).get("running", 0) == 1
                    and dispatch_states(site.database).get("queued", 0) == 1
                ),
                120,
                "one CT analysed, the other waiting",
                interval=0.05,
            )
            critical = chest_xray_study(64, ["Tension Pneumothorax"], accession_number="EXPRESS")
            send(site.port, critical.datasets)
            seconds = seconds_to_first_page(site, notify_http, critical.study_instance_uid)
            print(f"first page {seconds:.1f} s after study close, behind two long CTs")
            assert seconds < DEADLINE_SECONDS
            (radiograph,) = dispatch_rows(site.database, critical.study_instance_uid)
            assert radiograph["worker"] == "express-1" and radiograph["image_count"] == 1
            # both CTs still held by the general worker (running or queued) when it paged
            ct_rows = [dispatch_rows(site.database, ct.study_instance_uid)[0] for ct in cts]
            assert all(row["state"] in ("running", "queued") for row in ct_rows), ct_rows
            assert all(row["image_count"] == CT_SLICES for row in ct_rows)
            wait_for(
                lambda: dispatch_states(site.database) == {"completed": 3},
                600,
                "every study analysed",
                interval=0.5,
            )
            assert {
                row["worker"]
                for ct in cts
                for row in dispatch_rows(site.database, ct.study_instance_uid)
            } == {"worker-1"}
        finally:
            for process in workers:
                stop_worker(process)
