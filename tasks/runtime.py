"""Per-process resources the tasks share: settings, database, stores, peers (I/O).

A warm worker builds one :class:`Runtime` at start and installs it; a flow run started any
other way (a deployment run from the Prefect UI, a test) builds it on first use from the
environment (``PACSFLOW_CONFIG`` and ``PACSFLOW_*`` variables). Either way it is built once
per process and reused by every run, so models and connection pools stay warm.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

from integrations.db.connection import Database, open_database
from integrations.db.store import StudyStore
from integrations.dicom.scu import DicomClient, pacs_peer
from integrations.settings import Settings, load_settings


@dataclass
class Runtime:
    settings: Settings
    database: Database

    @cached_property
    def store(self) -> StudyStore:
        return StudyStore(self.database)

    @property
    def pacs(self) -> DicomClient:
        return self._pacs_client()

    @property
    def pacs_for_priors(self) -> DicomClient:
        """The PACS as the prior search calls it: a short wait to connect and associate, so a
        PACS that is down costs the run ``[priors] timeout_seconds``, then "no prior"."""
        return self._pacs_client(connect_timeout_seconds=self.settings.priors.timeout_seconds)

    def _pacs_client(self, connect_timeout_seconds: float | None = None) -> DicomClient:
        return DicomClient(
            pacs_peer(self.settings, connect_timeout_seconds=connect_timeout_seconds)
        )

    def close(self) -> None:
        self.database.close()


_runtime: Runtime | None = None
_lock = threading.Lock()


def install_runtime(runtime: Runtime) -> None:
    global _runtime
    with _lock:
        _runtime = runtime


def get_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            settings = load_settings()
            _runtime = Runtime(settings=settings, database=open_database(settings))
        return _runtime


def reset_runtime() -> None:
    """Close and forget the process runtime (tests switch settings between cases)."""
    global _runtime
    with _lock:
        if _runtime is not None:
            _runtime.close()
        _runtime = None
