"""The node's storage filling up, on a real (small tmpfs) filesystem: under ``[storage]
min_free_percent`` new associations are rejected as transient (A-ASSOCIATE-RJ
rejected-transient, temporary congestion) while the association already open goes on storing;
a write that finds the disk full is answered 0xA700 (out of resources); the operators get one
alert for the whole episode, however many senders retry; freeing space lets senders in again."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation

from deployments.orthanc import free_port
from integrations.dicom.status import STORE_OUT_OF_RESOURCES
from tests.dicom_samples import make_instance, study_files
from tests.fix_dcmtk import echoscu, storescu
from tests.fix_notify import ops_team_escalation
from tests.site import running_node

NODE_AE_TITLE = "PACSFLOW"
FILESYSTEM_BYTES = 16 * 1024 * 1024
MIN_FREE_PERCENT = 40.0
WEBHOOK_SECRET = "test-secret-for-the-signed-webhook"


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of its own (needs the right to mount, as root in the CI container)."""
    mount_point = tmp_path / "storage"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FILESYSTEM_BYTES}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill_to_free_percent(folder: Path, name: str, percent: float) -> Path:
    """A ballast file leaving ``percent`` of the filesystem free (0: as full as it gets)."""
    usage = shutil.disk_usage(folder)
    size = max(usage.free - int(usage.total * percent / 100), 0)
    path = folder / name
    with open(path, "wb") as handle:
        chunk = bytes(1024 * 1024)
        with suppress(OSError):  # ENOSPC: as full as it gets
            while size > 0:
                handle.write(chunk[: min(size, len(chunk))])
                size -= len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
    return path


def node_events(site, kind: str) -> list[dict]:
    with site.database.connection() as conn:
        return conn.execute("SELECT * FROM node_events WHERE kind = %s", (kind,)).fetchall()


def test_low_disk_refuses_new_associations_keeps_the_open_one_and_alerts_once(
    settings_factory, small_filesystem, tmp_path, notify_http, monkeypatch, caplog
):
    caplog.set_level(logging.WARNING)
    monkeypatch.setenv("PACSFLOW_ESCALATION__WEBHOOK_SECRET", WEBHOOK_SECRET)
    settings = settings_factory(
        node={
            "ae_title": NODE_AE_TITLE,
            "port": free_port(),
            "allowed_callers": ["MODALITY", "SECOND"],
            "storage_dir": str(small_filesystem),
        },
        storage={"min_free_percent": MIN_FREE_PERCENT},
        results={"alert_team": "pacs-admin"},
        escalation=ops_team_escalation(notify_http.url("/hooks/ops")),
    )
    modality = AE(ae_title="MODALITY")
    modality.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
    with running_node(settings, close_studies=False, alert_operators=True) as site:
        in_flight = modality.associate("127.0.0.1", site.port, ae_title=NODE_AE_TITLE)
        assert in_flight.is_established
        for number in range(1, 6):
            assert in_flight.send_c_store(make_instance("in-flight", number=number)).Status == 0

        ballast = fill_to_free_percent(small_filesystem, "ballast", MIN_FREE_PERCENT / 2)
        # three senders try while the disk is low: each is told "transient", none stored
        for _ in range(2):
            refused = modality.associate("127.0.0.1", site.port, ae_title=NODE_AE_TITLE)
            assert refused.is_rejected
            answer = refused.acceptor.primitive
            assert (answer.result, answer.result_source, answer.diagnostic) == (0x02, 0x03, 0x01)
        other = storescu("SECOND", NODE_AE_TITLE, site.port, study_files(tmp_path / "b", "other"))
        assert other.returncode != 0 and "Rejected Transient" in other.stdout + other.stderr

        # the study in flight goes on
        for number in range(6, 11):
            assert in_flight.send_c_store(make_instance("in-flight", number=number)).Status == 0
        # ... until a write finds no room at all: out of resources, nothing half-stored
        full = fill_to_free_percent(small_filesystem, "full", 0)
        answer = in_flight.send_c_store(make_instance("in-flight", number=11, size=512))
        assert answer.Status == STORE_OUT_OF_RESOURCES
        full.unlink()
        in_flight.release()

        (hook,) = notify_http.wait_for("/hooks/ops", timeout=20)
        ballast.unlink()
        assert echoscu("MODALITY", NODE_AE_TITLE, site.port).returncode == 0
        assert (
            storescu(
                "SECOND", NODE_AE_TITLE, site.port, study_files(tmp_path / "c", "later")
            ).returncode
            == 0
        )
        with site.database.connection() as conn:
            stored = conn.execute(
                "SELECT s.accession_number, count(*) AS n FROM instances i"
                " JOIN studies s USING (study_instance_uid) GROUP BY 1 ORDER BY 1"
            ).fetchall()
            rejected = conn.execute(
                "SELECT count(*) AS n FROM audit_records WHERE kind = 'association_rejected'"
            ).fetchone()["n"]
        low, recovered = node_events(site, "disk_low"), node_events(site, "disk_recovered")
    assert [(row["accession_number"], row["n"]) for row in stored] == [
        ("ACC-in-flight", 10),
        ("ACC-later", 3),
    ]
    assert rejected == 3
    assert len(low) == 1 and len(recovered) == 1
    body = hook.json()
    assert body["type"] == "pacsflow.operational_alert"
    assert body["facts"]["alert"] == "node_storage_low"
    assert body["facts"]["free_percent"] < MIN_FREE_PERCENT
    assert len(notify_http.received("/hooks/ops")) == 1
    alerts = [r for r in caplog.records if r.getMessage().startswith("ALERT")]
    assert len(alerts) == 1, [r.getMessage() for r in alerts]
