"""Prefect carries no patient data: a study with known identifiers goes through the real path
(node, warm worker, Prefect server), then every Prefect API listing is searched for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.fix_orthanc import PACS_AE_TITLE
from tests.integration.test_end_to_end import (  # noqa: F401 - the fixture
    completed_runs,
    site_settings,
    upload,
    wait_for,
)
from tests.site import running_node, running_worker

REPO_ROOT = Path(__file__).resolve().parents[2]
PATIENT_NAME = "Zyxwabcq^Quentinella"
PATIENT_ID = "MRN-ZQ-804173"
BIRTH_DATE = "19370412"
ACCESSION = "ACC-ZQ-551237"


def listing(api: str, path: str, body: dict | None = None) -> list:
    """Every item of a Prefect REST ``/filter`` listing, page by page."""
    items: list = []
    while True:
        for _attempt in range(5):  # the test server's SQLite answers 503 when busy
            response = httpx.post(
                f"{api}/{path}", json={**(body or {}), "limit": 200, "offset": len(items)}
            )
            if response.status_code != 503:
                break
        response.raise_for_status()
        page = response.json()
        items += page
        if len(page) < 200:
            return items


def events(api: str) -> list:
    response = httpx.post(f"{api}/events/filter", json={"limit": 50}, timeout=10)
    response.raise_for_status()
    page = response.json()
    found = list(page["events"])
    while page.get("next_page"):
        page = httpx.get(page["next_page"], timeout=10).json()
        found += page["events"]
    return found


def test_no_patient_identifier_reaches_prefect(site_settings, clean_orthanc, prefect_api_url):  # noqa: F811
    from models.phantoms.chest import chest_xray_study

    study = chest_xray_study(
        41, ["Pneumothorax"], patient_id=PATIENT_ID, accession_number=ACCESSION
    )
    for dataset in study.datasets:
        dataset.PatientName = PATIENT_NAME
        dataset.PatientBirthDate = BIRTH_DATE
    upload(clean_orthanc, study.datasets)
    settings = site_settings()
    with running_node(settings) as site, running_worker(settings):
        clean_orthanc.client.send_study("pacsflow", [study.study_instance_uid])
        (run,) = wait_for(lambda: completed_runs(prefect_api_url, study.study_instance_uid))
        key = site.store.study(study.study_instance_uid).study_key
        # the operator's view: one PHI-free artifact per run, saying what happened
        artifacts = wait_for(
            lambda: listing(
                prefect_api_url,
                "artifacts/filter",
                {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}},
            )
        )
        logs = wait_for(
            lambda: [
                log
                for log in listing(
                    prefect_api_url, "logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}}
                )
                if log["message"].startswith("done: tier")
            ]
        )
    (artifact,) = artifacts
    assert artifact["key"] == f"study-{key.lower()}"
    report = artifact["data"]
    assert f"DX {key} generation 1: done" in report
    assert "| chest-xray |" in report and "Pneumothorax" in report
    assert f"Result objects to PACS {PACS_AE_TITLE}@" in report
    assert "| sr | 1 | " in report  # built; stored or still queued for the results sender
    assert "## Prior: no prior:" in report
    assert logs

    everything = {
        "flow_runs": listing(prefect_api_url, "flow_runs/filter"),
        "task_runs": listing(prefect_api_url, "task_runs/filter"),
        "logs": listing(prefect_api_url, "logs/filter"),
        "artifacts": listing(prefect_api_url, "artifacts/filter"),
        "deployments": listing(prefect_api_url, "deployments/filter"),
        "flows": listing(prefect_api_url, "flows/filter"),
        "variables": listing(prefect_api_url, "variables/filter"),
        "events": events(prefect_api_url),
    }
    assert everything["task_runs"] and everything["logs"] and everything["events"]
    text = json.dumps(everything).lower()
    assert key.lower() in text  # the search does see this study's runs
    for identifier in (*PATIENT_NAME.split("^"), PATIENT_ID, BIRTH_DATE, "1937-04-12", ACCESSION):
        assert identifier.lower() not in text, f"{identifier} found in the Prefect API"


def pacsflow(settings, prefect_api_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PACSFLOW_CONFIG": "",
        "PACSFLOW_DATABASE__URL": settings.database.url,
        "PREFECT_API_URL": prefect_api_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_find_maps_accession_uid_and_mrn_to_the_key_and_run_url(
    site_settings,  # noqa: F811
    clean_orthanc,
    prefect_api_url,
):
    from models.phantoms.chest import chest_xray_study

    study = chest_xray_study(42, [], patient_id="MRN-FIND-1", accession_number="ACC-FIND-1")
    upload(clean_orthanc, study.datasets)
    settings = site_settings()
    with running_node(settings) as site, running_worker(settings):
        clean_orthanc.client.send_study("pacsflow", [study.study_instance_uid])
        (run,) = wait_for(lambda: completed_runs(prefect_api_url, study.study_instance_uid))
        key = site.store.study(study.study_instance_uid).study_key
        ui = prefect_api_url.removesuffix("/api")
        for term in ("ACC-FIND-1", study.study_instance_uid, "MRN-FIND-1", key.lower()):
            found = pacsflow(settings, prefect_api_url, "find", term)
            assert found.returncode == 0, found.stderr
            assert found.stdout.splitlines()[0].startswith(f"{key}  DX {key} gen 1  state done")
            assert f"{ui}/runs/flow-run/{run['id']}  Completed" in found.stdout
        assert pacsflow(settings, prefect_api_url, "find", "ACC-NOBODY").returncode == 1
        rerun = pacsflow(settings, prefect_api_url, "rerun", key)
        assert rerun.returncode == 0 and f"study {key} queued" in rerun.stdout
        wait_for(lambda: len(completed_runs(prefect_api_url, study.study_instance_uid)) == 2)
