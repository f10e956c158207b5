"""Study close, routing and the dispatch queue against a real node and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.dicom_samples import make_instance, study_files
from tests.fix_dcmtk import echoscu, storescu
from tests.fix_orthanc import NODE_AE_TITLE
from tests.site import running_node

REPO_ROOT = Path(__file__).resolve().parents[2]
CHEST_RULE = {
    "name": "chest",
    "modality": ["DX", "CR"],
    "body_part": ["CHEST"],
    "analyzers": ["chest-xray"],
}


@pytest.fixture
def assembly_settings(settings_factory, node_port):
    def make(quiet: float = 0.6, **extra):
        return settings_factory(
            node={"ae_title": NODE_AE_TITLE, "port": node_port, "allowed_callers": ["MODALITY"]},
            study={"quiet_seconds": quiet, "poll_seconds": 0.05},
            routing={"rules": [CHEST_RULE]},
            **extra,
        )

    return make


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def dispatch_rows(site, study_uid):
    with site.database.connection() as conn:
        return conn.execute(
            "SELECT generation, reason, state FROM dispatch WHERE study_instance_uid = %s ORDER BY id",
            (study_uid,),
        ).fetchall()


def test_study_is_queued_once_after_the_quiet_period_not_on_arrival(
    assembly_settings, tmp_path, dcmtk_tools
):
    files = study_files(tmp_path, "close-1", count=3)
    uid = make_instance("close-1").StudyInstanceUID
    with running_node(assembly_settings(quiet=1.0)) as site:
        assert storescu("MODALITY", NODE_AE_TITLE, site.port, files[:2]).returncode == 0
        time.sleep(0.5)
        assert site.store.study(uid).state == "receiving"
        assert storescu("MODALITY", NODE_AE_TITLE, site.port, files[2:]).returncode == 0
        time.sleep(0.7)  # 1.2 s after the first batch, 0.7 s after the last instance
        assert site.store.study(uid).state == "receiving"
        study = wait_for(lambda: (s := site.store.study(uid)).state == "queued" and s)
        assert (study.closed_at - study.last_received_at).total_seconds() >= 1.0
        assert study.route.analyzers == {
            "chest-xray": (make_instance("close-1").SeriesInstanceUID,)
        }
        time.sleep(0.3)
        assert [(r["generation"], r["state"]) for r in dispatch_rows(site, uid)] == [(1, "queued")]


def test_unrouted_study_is_recorded_with_the_reason(assembly_settings, tmp_path, dcmtk_tools):
    files = study_files(tmp_path, "mammo-1", count=1, modality="MG", body_part="BREAST")
    uid = make_instance("mammo-1").StudyInstanceUID
    with running_node(assembly_settings()) as site:
        assert storescu("MODALITY", NODE_AE_TITLE, site.port, files).returncode == 0
        study = wait_for(lambda: (s := site.store.study(uid)).state == "unrouted" and s)
        assert "modality MG not in" in study.unrouted_reason
        assert dispatch_rows(site, uid) == []


def test_late_instance_reopens_the_study_and_supersedes_the_queued_run(
    assembly_settings, tmp_path, dcmtk_tools
):
    files = study_files(tmp_path, "late-1", count=2)
    uid = make_instance("late-1").StudyInstanceUID
    with running_node(assembly_settings()) as site:
        assert storescu("MODALITY", NODE_AE_TITLE, site.port, files[:1]).returncode == 0
        wait_for(lambda: site.store.study(uid).state == "queued")
        assert storescu("MODALITY", NODE_AE_TITLE, site.port, files[1:]).returncode == 0
        reopened = site.store.study(uid)
        assert reopened.generation == 2 and reopened.instance_count == 2
        wait_for(lambda: site.store.study(uid).state == "queued")
        rows = dispatch_rows(site, uid)
    assert [(r["generation"], r["state"]) for r in rows] == [(1, "superseded"), (2, "queued")]


def test_node_restart_during_the_quiet_period_still_closes_the_study(
    assembly_settings, tmp_path, dcmtk_tools
):
    settings = assembly_settings(quiet=3.0)
    files = study_files(tmp_path, "restart-1", count=2)
    uid = make_instance("restart-1").StudyInstanceUID
    env = {
        **os.environ,
        "PACSFLOW_DATABASE__URL": settings.database.url,
        "PACSFLOW_NODE__PORT": str(settings.node.port),
        "PACSFLOW_NODE__AE_TITLE": NODE_AE_TITLE,
        "PACSFLOW_NODE__STORAGE_DIR": str(settings.node.storage_dir),
        "PACSFLOW_NODE__ALLOWED_CALLERS": '["MODALITY"]',
        "PACSFLOW_STUDY__QUIET_SECONDS": "3",
        "PACSFLOW_ROUTING__RULES": '[{"name": "chest", "modality": ["DX"], "analyzers": ["chest-xray"]}]',
        "PACSFLOW_CONFIG": "",
        "PYTHONPATH": str(REPO_ROOT),
    }
    command = [sys.executable, "-m", "deployments.cli", "node"]

    def start_node():
        process = subprocess.Popen(command, env=env, cwd=tmp_path)
        wait_for(
            lambda: (
                echoscu("MODALITY", NODE_AE_TITLE, settings.node.port).returncode == 0
                or process.poll() is not None
            ),
            timeout=30,
            interval=0.2,
        )
        assert process.poll() is None, "node did not start"
        return process

    from integrations.db.connection import open_database
    from integrations.db.store import StudyStore

    database = open_database(settings)
    store = StudyStore(database)
    first = start_node()
    try:
        assert storescu("MODALITY", NODE_AE_TITLE, settings.node.port, files).returncode == 0
        first.send_signal(signal.SIGKILL)  # a crash, well inside the quiet period
        first.wait(10)
        assert store.study(uid).state == "receiving"
        second = start_node()
        try:
            wait_for(lambda: store.study(uid).state == "queued", timeout=20)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()
        database.close()
