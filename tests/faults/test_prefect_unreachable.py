"""The Prefect API unreachable for 2 minutes (a real TCP link to the test's Prefect server,
cut): a Critical study closed meanwhile still pages within 60 s of study close, and once
Prefect is back its run completes, once, without paging twice (real node, a ``pacsflow
worker`` process, PostgreSQL, Prefect, the demo model, recording webhook/SMTP peers)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx
import pytest

from deployments.orthanc import free_port
from models.phantoms.chest import chest_xray_study
from tests.faults.paging import (
    DEADLINE_SECONDS,
    dispatch_states,
    fault_settings,
    seconds_to_first_page,
    send,
)
from tests.faults.workers import (
    SwitchablePacsLink,
    black_hole,
    start_worker,
    stop_worker,
    wait_for,
    worker_env,
)
from tests.site import running_node

PREFECT_DOWN_SECONDS = 120.0


def run_records(database, study_instance_uid: str) -> dict:  # type: ignore[no-untyped-def]
    """What the study's runs left: dispatch rows, analyses, escalations per finding, reports."""
    with database.connection() as conn:
        return {
            "dispatch": conn.execute(
                "SELECT state, flow_run_id FROM dispatch WHERE study_instance_uid = %s",
                (study_instance_uid,),
            ).fetchall(),
            "analyses": conn.execute(
                "SELECT count(*) AS n FROM analyses WHERE study_instance_uid = %s",
                (study_instance_uid,),
            ).fetchone()["n"],
            "escalations": conn.execute(
                "SELECT finding, count(*) AS n FROM escalations WHERE study_instance_uid = %s"
                " GROUP BY finding",
                (study_instance_uid,),
            ).fetchall(),
            "reports": conn.execute(
                "SELECT sop_instance_uid, count(*) AS n FROM results_outbox"
                " WHERE part = 'report' AND state <> 'superseded' AND study_instance_uid = %s"
                " GROUP BY 1",
                (study_instance_uid,),
            ).fetchall(),
        }


def assert_ran_once(records: dict) -> None:
    """One completed run, in Prefect; one analysis; one report each; one page per finding."""
    assert [row["state"] for row in records["dispatch"]] == ["completed"]
    assert records["dispatch"][0]["flow_run_id"] is not None  # the run is in Prefect after all
    assert records["analyses"] == 1
    assert records["reports"] and all(row["n"] == 1 for row in records["reports"])
    print("escalations:", records["escalations"])
    # the rerun did not open (and page) a finding again
    assert records["escalations"] and all(row["n"] == 1 for row in records["escalations"])


@pytest.mark.slow
def test_critical_study_pages_within_60_s_while_prefect_is_unreachable(
    settings_factory, node_port, prefect_api_url, demo_models_dir, notify_http, notify_smtp,
    tmp_path,
):  # fmt: skip
    settings = fault_settings(
        settings_factory, node_port, demo_models_dir, notify_http, notify_smtp,
        pacs={"port": free_port()},  # results are queued in the outbox; no PACS needed here
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
            seconds = seconds_to_first_page(site, notify_http, critical.study_instance_uid)
            print(f"first page {seconds:.1f} s after study close, Prefect unreachable")
            assert seconds < DEADLINE_SECONDS
            waiting = run_records(site.database, critical.study_instance_uid)["dispatch"]
            assert [row["state"] for row in waiting] in (["queued"], ["running"])
            time.sleep(max(0.0, PREFECT_DOWN_SECONDS - (time.monotonic() - cut_at)))
            link.forwarding = True  # Prefect is back
            wait_for(
                lambda: dispatch_states(site.database) == {"completed": 2},
                180,
                "the study's run completed once Prefect is back",
            )
            records = run_records(site.database, critical.study_instance_uid)
        finally:
            stop_worker(worker)
            console = (logs / "worker-1.log").read_text(errors="replace")
            print(console[-6000:])
    assert_ran_once(records)
    # run_scheduled, every pass of the two minutes: one line for the outage and one when it
    # is over, never a traceback per pass
    assert "worker pass failed" not in console
    assert console.count("runs scheduled from the UI wait until it answers") == 1
    assert console.count("Prefect API answers again") == 1


@pytest.mark.slow
def test_worker_started_while_prefect_is_unreachable_pages_then_runs_once_it_is_back(
    settings_factory, node_port, prefect_api_url, demo_models_dir, notify_http, notify_smtp,
    tmp_path,
):  # fmt: skip
    """The worker's Prefect client used to check the server version on entering, before the
    worker served anything: started while Prefect is silent, it hung there and paged nothing."""
    settings = fault_settings(
        settings_factory, node_port, demo_models_dir, notify_http, notify_smtp,
        pacs={"port": free_port()},
    )  # fmt: skip
    prefect = urlsplit(prefect_api_url)
    logs = tmp_path / "workers"
    with (
        SwitchablePacsLink(prefect.port or 80) as link,  # not forwarding: Prefect is silent
        running_node(settings) as site,
    ):
        env = worker_env(settings, f"http://127.0.0.1:{link.port}{prefect.path}")
        worker = start_worker("worker-1", env, logs)
        try:
            critical = chest_xray_study(64, ["Tension Pneumothorax"], accession_number="COLDSTART")
            send(site.port, critical.datasets)
            seconds = seconds_to_first_page(site, notify_http, critical.study_instance_uid)
            print(f"first page {seconds:.1f} s after study close, worker started without Prefect")
            assert seconds < DEADLINE_SECONDS
            assert worker.poll() is None
            link.forwarding = True  # Prefect is back
            wait_for(
                lambda: dispatch_states(site.database) == {"completed": 1},
                180,
                "the study's run completed once Prefect is back",
            )
            time.sleep(3)  # a run queued twice would show by now
            records = run_records(site.database, critical.study_instance_uid)
        finally:
            stop_worker(worker)
            console = (logs / "worker-1.log").read_text(errors="replace")
            print(console[-6000:])
    assert_ran_once(records)
    assert "worker pass failed" not in console


@pytest.mark.slow
def test_run_in_flight_when_prefect_dies_frees_its_worker_and_reruns_once(
    settings_factory, node_port, prefect_api_url, demo_models_dir, notify_http, notify_smtp,
    tmp_path,
):  # fmt: skip
    """Prefect's client retries a state report for about a minute per call (five times, with
    backoff): a run whose Prefect died held its worker for minutes, then ended failed."""
    prefect = urlsplit(prefect_api_url)
    logs = tmp_path / "workers"
    with (
        black_hole() as pacs_port,  # priors wait on a silent PACS: the run is in flight a while
        SwitchablePacsLink(prefect.port or 80) as link,
    ):
        settings = fault_settings(
            settings_factory, node_port, demo_models_dir, notify_http, notify_smtp,
            pacs={"port": pacs_port, "timeout_seconds": 15},
        )  # fmt: skip
        link.forwarding = True
        env = worker_env(settings, f"http://127.0.0.1:{link.port}{prefect.path}")
        with running_node(settings) as site:
            worker = start_worker("worker-1", env, logs)
            try:
                in_flight = chest_xray_study(
                    64, ["Tension Pneumothorax"], accession_number="INFLIGHT"
                )
                send(site.port, in_flight.datasets)
                seconds_to_first_page(site, notify_http, in_flight.study_instance_uid)
                running = run_records(site.database, in_flight.study_instance_uid)["dispatch"]
                assert [row["state"] for row in running] == ["running"]  # waiting on priors
                lost_run = str(running[0]["flow_run_id"])
                link.kill()  # the Prefect server dies during the run
                killed_at = time.monotonic()
                later = chest_xray_study(66, ["Pneumothorax"], accession_number="AFTERDEATH")
                send(site.port, later.datasets)
                seconds = seconds_to_first_page(site, notify_http, later.study_instance_uid)
                print(f"later study paged {seconds:.1f} s after its close, Prefect dead")
                assert seconds < DEADLINE_SECONDS
                requeued = wait_for(
                    lambda: (
                        run_records(site.database, in_flight.study_instance_uid)["dispatch"]
                        == [{"state": "queued", "flow_run_id": None}]
                    ),
                    30,
                    "the run in flight queued again",
                )
                assert requeued
                print(f"run in flight queued again {time.monotonic() - killed_at:.1f} s after")
                link.revive()  # Prefect is back
                wait_for(
                    lambda: dispatch_states(site.database) == {"completed": 2},
                    180,
                    "both runs completed once Prefect is back",
                )
                crashed = wait_for(
                    lambda: (
                        flow_run_state(prefect_api_url, lost_run)["type"] == "CRASHED"
                        and flow_run_state(prefect_api_url, lost_run)
                    ),
                    60,
                    "the lost flow run set to Crashed",
                )
                assert "Prefect API unreachable; queued again" in crashed["message"]
                time.sleep(3)  # a run queued twice would show by now
                records = [
                    run_records(site.database, study.study_instance_uid)
                    for study in (in_flight, later)
                ]
            finally:
                stop_worker(worker)
                console = (logs / "worker-1.log").read_text(errors="replace")
                print(console[-8000:])
    for study_records in records:
        assert_ran_once(study_records)
    assert "could not be executed" not in console  # the death is not the run's failure


def flow_run_state(api_url: str, flow_run_id: str) -> dict:
    response = httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=10)
    response.raise_for_status()
    return response.json()["state"]
