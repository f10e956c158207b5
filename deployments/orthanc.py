"""A local Orthanc as the PACS for the demo and the tests: config, process, REST (I/O).

Orthanc plays the hospital PACS: it sends studies to the node (REST ``/modalities/<node>/store``
triggers its C-STORE SCU), answers C-FIND and C-MOVE for priors, and receives the results.
DCMTK-based peers need ``TCP_NODELAY=1`` or every DIMSE exchange waits ~40 ms (RECIPES.md).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from integrations.dicom.pacs_api import find_resource, send_studies

ORTHANC_BINARY = "/usr/sbin/Orthanc"


def orthanc_available() -> bool:
    return Path(ORTHANC_BINARY).exists() or shutil.which("Orthanc") is not None


@dataclass(frozen=True)
class Modality:
    """A DICOM peer registered in Orthanc (it may store to it, query it, move to it)."""

    alias: str
    ae_title: str
    host: str
    port: int
    use_tls: bool = False  # Orthanc's "UseDicomTls": it calls this modality over TLS only


@dataclass(frozen=True)
class OrthancTls:
    """Orthanc's DICOM TLS (1.9+): its DICOM port then speaks TLS only, and it presents the
    same certificate when it calls a modality with ``use_tls``."""

    certificate: Path
    private_key: Path
    trusted_certificates: Path
    remote_certificate_required: bool = True


@dataclass
class OrthancConfig:
    """Orthanc as sites run it: its own defaults except where a field here says otherwise.

    ``overwrite_instances``: None leaves Orthanc's default (false: a second instance under a
    known SOP Instance UID is answered with success and the first copy is kept, as most
    archives do); tests covering an archive that overwrites set True.
    ``lua_scripts``: scripts Orthanc runs (a site's forwarding rule, for instance).
    ``check_called_aet``: True for a PACS that refuses a wrong called AE title.
    """

    storage_dir: Path
    ae_title: str = "ORTHANC"
    dicom_port: int = 4242
    http_port: int = 8042
    modalities: list[Modality] = field(default_factory=list)
    overwrite_instances: bool | None = None
    lua_scripts: list[Path] = field(default_factory=list)
    tls: OrthancTls | None = None
    # A stricter PACS than Orthanc's default: refuse an association whose called AE title is
    # not Orthanc's own (A-ASSOCIATE-RJ "called AE title not recognised").
    check_called_aet: bool = False

    def to_json(self) -> dict[str, Any]:
        optional: dict[str, Any] = {}
        if self.tls is not None:
            optional |= {
                "DicomTlsEnabled": True,
                "DicomTlsCertificate": str(self.tls.certificate),
                "DicomTlsPrivateKey": str(self.tls.private_key),
                "DicomTlsTrustedCertificates": str(self.tls.trusted_certificates),
                "DicomTlsRemoteCertificateRequired": self.tls.remote_certificate_required,
            }
        if self.overwrite_instances is not None:
            optional["OverwriteInstances"] = self.overwrite_instances
        if self.lua_scripts:
            optional["LuaScripts"] = [str(path) for path in self.lua_scripts]
        return {
            "Name": "pacsflow-pacs",
            "StorageDirectory": str(self.storage_dir / "db"),
            "IndexDirectory": str(self.storage_dir / "db"),
            "Plugins": [],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": self.check_called_aet,
            "DicomCheckModalityHost": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "StableAge": 2,
            "DicomScuTimeout": 30,
            "DicomModalities": {
                m.alias: {
                    "AET": m.ae_title,
                    "Host": m.host,
                    "Port": m.port,
                    **({"UseDicomTls": True} if m.use_tls else {}),
                }
                for m in self.modalities
            },
            **optional,
        }


class OrthancProcess:
    """Orthanc started with a generated config; ``stop()`` waits for it to exit."""

    def __init__(self, config: OrthancConfig) -> None:
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{config.http_port}"

    def start(self, timeout: float = 30.0) -> None:
        self.config.storage_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.config.storage_dir / "orthanc.json"
        config_path.write_text(json.dumps(self.config.to_json(), indent=2))
        log_path = self.config.storage_dir / "orthanc.log"
        binary = ORTHANC_BINARY if Path(ORTHANC_BINARY).exists() else "Orthanc"
        with open(log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [binary, str(config_path)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TCP_NODELAY": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start; see {log_path}")
            try:
                if httpx.get(f"{self.url}/system", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"Orthanc did not answer on {self.url} within {timeout} s; see {log_path}"
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class OrthancClient:
    """The few REST calls pacsflow's demo and tests need."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.http = httpx.Client(base_url=url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def upload(self, dicom_bytes: bytes) -> dict[str, Any]:
        response = self.http.post(
            "/instances", content=dicom_bytes, headers={"Content-Type": "application/dicom"}
        )
        response.raise_for_status()
        return response.json()

    def find_study(self, study_instance_uid: str) -> str | None:
        """Orthanc's ID of a study by its Study Instance UID."""
        return find_resource(self.http, study_instance_uid, "Study")

    def send_study(self, modality_alias: str, study_instance_uids: Iterable[str]) -> dict[str, Any]:
        """Ask Orthanc to C-STORE whole studies to a registered modality (synchronously)."""
        return send_studies(self.http, modality_alias, study_instance_uids)

    def echo(self, modality_alias: str) -> bool:
        return self.http.post(f"/modalities/{modality_alias}/echo", json={}).status_code == 200

    def series_of(self, study_instance_uid: str) -> list[dict[str, Any]]:
        study_id = self.find_study(study_instance_uid)
        if study_id is None:
            return []
        response = self.http.get(f"/studies/{study_id}/series", params={"expand": ""})
        response.raise_for_status()
        return response.json()

    def instances_of(self, study_instance_uid: str) -> list[dict[str, Any]]:
        study_id = self.find_study(study_instance_uid)
        if study_id is None:
            return []
        response = self.http.get(f"/studies/{study_id}/instances", params={"expand": ""})
        response.raise_for_status()
        return response.json()

    def instance_file(self, orthanc_instance_id: str) -> bytes:
        response = self.http.get(f"/instances/{orthanc_instance_id}/file")
        response.raise_for_status()
        return response.content

    def instance_tags(self, orthanc_instance_id: str) -> dict[str, Any]:
        response = self.http.get(f"/instances/{orthanc_instance_id}/simplified-tags")
        response.raise_for_status()
        return response.json()

    def delete_everything(self) -> None:
        for patient in self.http.get("/patients").json():
            self.http.delete(f"/patients/{patient}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
