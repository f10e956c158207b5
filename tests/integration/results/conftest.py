"""Fixtures for result tests against a PACS that runs with Orthanc's defaults (I/O)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from deployments.orthanc import (
    Modality,
    OrthancClient,
    OrthancConfig,
    OrthancProcess,
    free_port,
)
from tests.fix_orthanc import NODE_AE_TITLE, NODE_ALIAS, PACS_AE_TITLE, OrthancPeer
from tests.integration.emr.helpers import fast_emr

CHEST_RULE = {
    "name": "chest",
    "modality": ["DX", "CR"],
    "body_part": ["CHEST"],
    "analyzers": ["chest-xray"],
}


class DefaultOrthancConfig(OrthancConfig):
    """The project's Orthanc config with Orthanc's own default ``OverwriteInstances: false``."""

    def to_json(self) -> dict[str, Any]:
        config = super().to_json()
        config.pop("OverwriteInstances", None)
        return config


@pytest.fixture
def default_orthanc(tmp_path, node_port) -> Iterator[OrthancPeer]:
    config = DefaultOrthancConfig(
        storage_dir=tmp_path / "orthanc",
        ae_title=PACS_AE_TITLE,
        dicom_port=free_port(),
        http_port=free_port(),
        modalities=[Modality(NODE_ALIAS, NODE_AE_TITLE, "127.0.0.1", node_port)],
    )
    assert "OverwriteInstances" not in config.to_json()
    process = OrthancProcess(config)
    process.start()
    client = OrthancClient(process.url)
    yield OrthancPeer(client, PACS_AE_TITLE, config.dicom_port, process.url, node_port)
    client.close()
    process.stop()


def site(settings_factory, node_port, orthanc, demo_models_dir, mllp_port, **overrides):
    sections: dict[str, dict[str, Any]] = {
        "node": {
            "ae_title": NODE_AE_TITLE,
            "port": node_port,
            "allowed_callers": [PACS_AE_TITLE],
        },
        "pacs": {
            "ae_title": PACS_AE_TITLE,
            "host": "127.0.0.1",
            "port": orthanc.dicom_port,
            "timeout_seconds": 10,
        },
        "study": {"quiet_seconds": 1.0, "poll_seconds": 0.05},
        "routing": {"rules": [CHEST_RULE]},
        "models": {"dir": str(demo_models_dir), "device": "cpu"},
        "emr": fast_emr(mllp_port, ack_timeout_seconds=5.0),
        **overrides,
    }
    return settings_factory(**sections)


def completed_runs(site_handle, study_uid: str) -> int:
    with site_handle.database.connection() as conn:
        rows = conn.execute(
            "SELECT state FROM dispatch WHERE study_instance_uid = %s", (study_uid,)
        ).fetchall()
    return sum(row["state"] == "completed" for row in rows)
