"""Orthanc on loopback as the hospital PACS for the test session (I/O).

Started once per session with a generated config in which the node under test is a known
modality (alias ``pacsflow``), so Orthanc can store to it and move priors to it. The node's
port is chosen here so the config can name it before any node starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from deployments.orthanc import (
    Modality,
    OrthancClient,
    OrthancConfig,
    OrthancProcess,
    free_port,
    orthanc_available,
)

NODE_ALIAS = "pacsflow"
NODE_AE_TITLE = "PACSFLOW"
PACS_AE_TITLE = "ORTHANC"
TEST_SCU_AE_TITLE = "TESTSCU"


@dataclass(frozen=True)
class OrthancPeer:
    client: OrthancClient
    ae_title: str
    dicom_port: int
    http_url: str
    node_port: int


@pytest.fixture(scope="session")
def node_port() -> int:
    """The port the node under test listens on (Orthanc knows it as modality 'pacsflow')."""
    return free_port()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory, node_port: int) -> Iterator[OrthancPeer]:
    if not orthanc_available():
        pytest.fail("Orthanc is not installed (make setup installs it)")
    config = OrthancConfig(
        storage_dir=tmp_path_factory.mktemp("orthanc"),
        ae_title=PACS_AE_TITLE,
        dicom_port=free_port(),
        http_port=free_port(),
        modalities=[
            Modality(NODE_ALIAS, NODE_AE_TITLE, "127.0.0.1", node_port),
            Modality("testscu", TEST_SCU_AE_TITLE, "127.0.0.1", free_port()),
        ],
    )
    process = OrthancProcess(config)
    process.start()
    client = OrthancClient(process.url)
    yield OrthancPeer(client, PACS_AE_TITLE, config.dicom_port, process.url, node_port)
    client.close()
    process.stop()


@pytest.fixture
def clean_orthanc(orthanc: OrthancPeer) -> OrthancPeer:
    """The session Orthanc, emptied before the test."""
    orthanc.client.delete_everything()
    return orthanc
