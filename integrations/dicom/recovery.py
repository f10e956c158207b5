"""After a crash: spool files without a database row are recorded, leftovers removed (I/O).

The node acknowledges an instance only after the file is on disk and its row committed; a
crash between the two leaves a file the sender will resend. Recording it here at start makes
the spool and the database agree again, and keeps its study's quiet period running.
"""

from __future__ import annotations

import logging

from integrations.db.store import StudyStore
from integrations.dicom.header import dataset_offset, read_header
from integrations.dicom.spool import Spool, content_sha256
from integrations.errors import DatasetError

log = logging.getLogger(__name__)


def reconcile_spool(spool: Spool, store: StudyStore) -> int:
    """Record every complete spool file the database does not know; return how many."""
    removed = spool.remove_leftovers()
    if removed:
        log.warning("removed %d incomplete temporary files from the spool", removed)
    known = store.instance_paths()
    recorded = 0
    for path in spool.files():
        if str(path) in known:
            continue
        data = path.read_bytes()
        try:
            header = read_header(data)
        except DatasetError as error:
            log.error("spool file %s cannot be read (%s); left in place", path, error)
            continue
        if (
            spool.path_for(
                header.study_instance_uid, header.series_instance_uid, header.sop_instance_uid
            )
            != path
        ):
            log.error("spool file %s does not match its UIDs; left in place", path)
            continue
        store.record_instance(
            header,
            path=str(path),
            size_bytes=len(data),
            calling_ae_title="(recovered)",
            content_sha256=content_sha256(data[dataset_offset(data) :]),
        )
        recorded += 1
    if recorded:
        log.warning("recorded %d spool files that were missing from the database", recorded)
    return recorded
