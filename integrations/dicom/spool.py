"""The spool: received instances on disk, written atomically under validated UIDs (I/O).

Layout: ``<root>/<study UID>/<series UID>/<SOP instance UID>.dcm``. Every path component is
a UID checked by :func:`validate_uid` first, so nothing a peer sends can name a path outside
the spool. A file appears under its final name only complete (temporary file, fsync, rename),
so a crash leaves either the whole instance or nothing.

Each write also gives the SHA-256 of the dataset bytes (file meta excluded, since the meta
names the sender): two arrivals under one SOP Instance UID are the same content exactly
when their hashes are equal.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from integrations.dicom.header import dataset_offset
from integrations.dicom.uids import validate_uid

SUFFIX = ".dcm"
TEMP_PREFIX = ".incoming-"


@dataclass(frozen=True)
class SpooledFile:
    path: Path
    size_bytes: int
    already_present: bool
    content_sha256: str  # of the dataset as received this time


def content_sha256(dataset: bytes) -> str:
    """The content hash pacsflow records per instance: SHA-256 of the encoded dataset."""
    return hashlib.sha256(dataset).hexdigest()


def file_content_sha256(path: Path) -> str:
    """The content hash of a spooled file (its dataset after the file meta)."""
    data = path.read_bytes()
    return content_sha256(data[dataset_offset(data) :])


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
        meta: bytes,
        dataset: bytes,
        *,
        replace: bool = False,
    ) -> SpooledFile:
        """Store file meta + dataset durably; an instance already on disk is kept unless
        ``replace``, which swaps the new content in atomically (readers see old or new)."""
        digest = content_sha256(dataset)
        final = self.path_for(study_instance_uid, series_instance_uid, sop_instance_uid)
        if not replace and final.exists():
            return SpooledFile(final, final.stat().st_size, True, digest)
        folder = final.parent
        created = False
        if folder not in self._known_folders:
            created = not folder.exists()
            folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            with open(temporary, "wb") as handle:
                handle.write(meta)
                handle.write(dataset)
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
        return SpooledFile(final, len(meta) + len(dataset), False, digest)

    def discard(self, path: Path) -> None:
        """Remove a file this node wrote but did not keep (a changed duplicate refused or
        kept-first that arrived under another series)."""
        path.unlink(missing_ok=True)

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
