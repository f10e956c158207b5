"""The spool: received instances on disk, written atomically under validated UIDs (I/O).

Layout: ``<root>/<study UID>/<series UID>/<SOP instance UID>.dcm``. Every path component is
a UID checked by :func:`validate_uid` first, so nothing a peer sends can name a path outside
the spool. A file appears under its final name only complete (temporary file, fsync, rename),
so a crash leaves either the whole instance or nothing.

Each write also gives the SHA-256 of the dataset bytes (file meta excluded, since the meta
names the sender): two arrivals under one SOP Instance UID are the same content exactly
when their hashes are equal.

:meth:`Spool.begin_write` lets the caller overlap the slow part: writing the file, its
fsync, its rename and the fsync of its folder run in a background thread while the caller
hashes the dataset and goes on; :meth:`PendingWrite.wait` returns once all of it is done.
The node writes the instance's row in an open transaction meanwhile and commits only after
``wait``: the file is durable before its row, as before.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from integrations.dicom.header import dataset_offset
from integrations.dicom.uids import validate_uid

SUFFIX = ".dcm"
TEMP_PREFIX = ".incoming-"
# Threads that make writes durable: one per concurrent writer is enough (the node's
# associations); more writers than this wait their turn, never fail.
DURABILITY_THREADS = 32


@dataclass(frozen=True)
class SpooledFile:
    path: Path
    size_bytes: int
    already_present: bool
    content_sha256: str  # of the dataset as received this time


@dataclass(frozen=True)
class PendingWrite:
    """A write whose dataset is hashed; ``wait`` until its file is stored durably."""

    spooled: SpooledFile
    durable: Future[None] | None = None

    def wait(self) -> SpooledFile:
        """The stored file, once fsynced, renamed and its folder fsynced (raises OSError
        when that failed: the temporary file is gone and nothing is under the final name)."""
        if self.durable is not None:
            self.durable.result()
        return self.spooled

    def failure(self) -> BaseException | None:
        """Waits like ``wait``; the error that kept the file from being stored, if any."""
        if self.durable is None:
            return None
        return self.durable.exception()


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
        self._durability_threads: ThreadPoolExecutor | None = None
        self._durability_lock = threading.Lock()

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
        return self.begin_write(
            study_instance_uid,
            series_instance_uid,
            sop_instance_uid,
            meta,
            dataset,
            replace=replace,
        ).wait()

    def begin_write(
        self,
        study_instance_uid: str,
        series_instance_uid: str,
        sop_instance_uid: str,
        meta: bytes,
        dataset: bytes,
        *,
        replace: bool = False,
    ) -> PendingWrite:
        """:meth:`write`, returning once the dataset is hashed: with fsync on, writing the
        file, its fsync, the rename and the folder's fsync go on in a background thread
        until :meth:`PendingWrite.wait` (hashing and writing overlap)."""
        final = self.path_for(study_instance_uid, series_instance_uid, sop_instance_uid)
        if not replace and final.exists():
            return PendingWrite(
                SpooledFile(final, final.stat().st_size, True, content_sha256(dataset))
            )
        durable: Future[None] | None = None
        if self.fsync:
            durable = self._durability().submit(self._store, final, meta, dataset)
        else:
            self._store(final, meta, dataset)
        spooled = SpooledFile(final, len(meta) + len(dataset), False, content_sha256(dataset))
        return PendingWrite(spooled, durable)

    def _durability(self) -> ThreadPoolExecutor:
        with self._durability_lock:
            if self._durability_threads is None:
                self._durability_threads = ThreadPoolExecutor(
                    DURABILITY_THREADS, thread_name_prefix="spool-fsync"
                )
            return self._durability_threads

    def _store(self, final: Path, meta: bytes, dataset: bytes) -> None:
        """Temporary file, written and fsynced, renamed to ``final``, folder fsynced (and
        the folders above, when it was created)."""
        folder = final.parent
        created = False
        if folder not in self._known_folders:
            created = not folder.exists()
            folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                _write_all(descriptor, meta)
                _write_all(descriptor, dataset)
                if self.fsync:
                    os.fsync(descriptor)
            finally:
                os.close(descriptor)
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


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
