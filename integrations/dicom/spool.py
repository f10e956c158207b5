"""The spool: received instances on disk, written atomically under validated UIDs (I/O).

Layout: ``<root>/<study UID>/<series UID>/<SOP instance UID>.dcm``. Every path component is
a UID checked by :func:`validate_uid` first, so nothing a peer sends can name a path outside
the spool. A file appears under its final name only complete (temporary file, fsync, rename),
so a crash leaves either the whole instance or nothing.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from integrations.dicom.uids import validate_uid

SUFFIX = ".dcm"
TEMP_PREFIX = ".incoming-"


@dataclass(frozen=True)
class SpooledFile:
    path: Path
    size_bytes: int
    already_present: bool


class Spool:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        root.mkdir(parents=True, exist_ok=True)
        self._known_folders: set[Path] = set()  # series folders that exist and are durable

    def path_for(
        self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str
    ) -> Path:
        return (
            self.root
            / validate_uid(study_instance_uid, "Study Instance UID")
            / validate_uid(series_instance_uid, "Series Instance UID")
            / (validate_uid(sop_instance_uid, "SOP Instance UID") + SUFFIX)
        )

    def write(
        self,
        study_instance_uid: str,
        series_instance_uid: str,
        sop_instance_uid: str,
        *parts: bytes,
    ) -> SpooledFile:
        """Store the concatenated ``parts`` durably; an instance already on disk is kept."""
        final = self.path_for(study_instance_uid, series_instance_uid, sop_instance_uid)
        if final.exists():
            return SpooledFile(final, final.stat().st_size, already_present=True)
        folder = final.parent
        created = False
        if folder not in self._known_folders:
            created = not folder.exists()
            folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            with open(temporary, "wb") as handle:
                for part in parts:
                    handle.write(part)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        if self.fsync:
            _fsync_directory(folder)
            if created:
                _fsync_directory(folder.parent)
                _fsync_directory(self.root)
        self._known_folders.add(folder)
        return SpooledFile(final, sum(len(part) for part in parts), already_present=False)

    def files(self) -> Iterator[Path]:
        """Every complete instance file in the spool (for reconciliation after a crash)."""
        for path in self.root.glob(f"*/*/*{SUFFIX}"):
            if not path.name.startswith(TEMP_PREFIX):
                yield path

    def remove_leftovers(self) -> int:
        """Delete temporary files a crash left behind; they were never acknowledged."""
        removed = 0
        for path in self.root.glob(f"*/*/{TEMP_PREFIX}*"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
