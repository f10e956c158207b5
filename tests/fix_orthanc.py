"""Orthanc on loopback as the hospital PACS for the test session (I/O).

Started once per session with a generated config in which the node under test is a known
modality (alias ``pacsflow``), so Orthanc can store to it and move priors to it. The node's
port is chosen here so the config can name it before any node starts.

The session Orthanc runs with Orthanc's defaults (``OverwriteInstances`` false, as most
archives). A test that needs another kind of PACS (one that overwrites, one with a site's
forwarding rule) starts its own with ``start_orthanc``, which stops it after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

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

# A forwarding rule as many sites write it: everything Orthanc stores goes to the node, the
# node's own results included (RECIPES.md, "Orthanc as sites run it").
FORWARD_EVERYTHING_LUA = f"""
function OnStoredInstance(instanceId, tags, metadata, origin)
  SendToModality(instanceId, '{NODE_ALIAS}')
end
"""


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


def _start(
    storage_dir: Path,
    node_port: int,
    *,
    ae_title: str = PACS_AE_TITLE,
    overwrite_instances: bool | None = None,
    lua: str = "",
    check_called_aet: bool = False,
) -> tuple[OrthancPeer, OrthancProcess]:
    if not orthanc_available():
        pytest.fail("Orthanc is not installed (make setup installs it)")
    lua_scripts = []
    if lua:
        storage_dir.mkdir(parents=True, exist_ok=True)
        script = storage_dir / "site.lua"
        script.write_text(lua)
        lua_scripts.append(script)
    config = OrthancConfig(
        storage_dir=storage_dir,
        ae_title=ae_title,
        dicom_port=free_port(),
        http_port=free_port(),
        modalities=[
            Modality(NODE_ALIAS, NODE_AE_TITLE, "127.0.0.1", node_port),
            Modality("testscu", TEST_SCU_AE_TITLE, "127.0.0.1", free_port()),
        ],
        overwrite_instances=overwrite_instances,
        lua_scripts=lua_scripts,
        check_called_aet=check_called_aet,
    )
    process = OrthancProcess(config)
    process.start()
    client = OrthancClient(process.url)
    return OrthancPeer(client, ae_title, config.dicom_port, process.url, node_port), process


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory, node_port: int) -> Iterator[OrthancPeer]:
    peer, process = _start(tmp_path_factory.mktemp("orthanc"), node_port)
    yield peer
    peer.client.close()
    process.stop()


@pytest.fixture
def start_orthanc(
    tmp_path_factory: pytest.TempPathFactory, node_port: int
) -> Iterator[Callable[..., OrthancPeer]]:
    """Start a further Orthanc for one test, e.g. ``start_orthanc(overwrite_instances=True)``
    or ``start_orthanc(ae_title="FWDPACS", lua=FORWARD_EVERYTHING_LUA)`` or
    ``start_orthanc(check_called_aet=True)`` (a strict PACS); it knows the node
    under test as modality ``pacsflow`` like the session one."""
    started: list[tuple[OrthancPeer, OrthancProcess]] = []

    def start(**options: object) -> OrthancPeer:
        started.append(_start(tmp_path_factory.mktemp("orthanc-extra"), node_port, **options))  # type: ignore[arg-type]
        return started[-1][0]

    yield start
    for peer, process in started:
        peer.client.close()
        process.stop()


@pytest.fixture
def clean_orthanc(orthanc: OrthancPeer) -> OrthancPeer:
    """The session Orthanc, emptied before the test."""
    orthanc.client.delete_everything()
    return orthanc
