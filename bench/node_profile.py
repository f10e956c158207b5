"""Where one association's time goes in the node, per instance (I/O).

Usage: ``python -m bench.node_profile [--size 512] [--images 200] [--cprofile]``. Runs the
node in this process (``pacsflow node``'s settings and pydicom mode, fsync on, a scratch
PostgreSQL database; no study closer and no audit trail), sends ``--images`` CT slices with
dcmtk's storescu on one association, and prints, per instance, the wall time of each step of
the receive path, measured with ``time.perf_counter_ns`` around the functions that do it.
Steps nest: "PDU read" is inside "PDU read + decode + queue", the indented lines inside the
"C-STORE handler" line above them, and that inside "association _serve_request"; the lines
marked [spool thread] run beside the handler. Times include waits for the GIL.
``--cprofile`` adds the top functions by own time over the DUL and association threads
(cProfile slows everything down; its totals are not the wall times above).

storescu sends P-DATA-TF PDUs of at most 128 KiB (dcmtk's limit, whatever the node
advertises): six PDUs per 512 KB instance, one of them the command.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import scratch_database
from bench.ingest import make_images, send
from deployments.orthanc import free_port

TIMES: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # step -> [ns, calls]
_LOCK = threading.Lock()
PROFILES: list[cProfile.Profile] = []


def timed(step: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter_ns()
        try:
            return function(*args, **kwargs)
        finally:
            elapsed = time.perf_counter_ns() - started
            with _LOCK:
                TIMES[step][0] += elapsed
                TIMES[step][1] += 1

    return wrapper


def patch(owner: Any, name: str, step: str) -> None:
    """Time ``owner.name`` as ``step`` (skipped where this tree has no such function, so the
    same script profiles an older tree too)."""
    if hasattr(owner, name):
        setattr(owner, name, timed(step, getattr(owner, name)))


def profiled(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        profile = cProfile.Profile()
        PROFILES.append(profile)
        profile.enable()
        try:
            return function(*args, **kwargs)
        finally:
            profile.disable()

    return wrapper


def instrument(use_cprofile: bool) -> None:
    import psycopg
    import pynetdicom.association
    import pynetdicom.dimse
    import pynetdicom.dimse_messages
    import pynetdicom.dul
    import pynetdicom.events
    import pynetdicom.fsm
    import pynetdicom.transport

    import integrations.dicom.guard as guard
    import integrations.dicom.reactor as reactor
    import integrations.dicom.scp as scp
    import integrations.dicom.spool as spool
    from integrations.db.store import StudyStore

    dul = pynetdicom.dul.DULServiceProvider
    patch(dul, "_decode_pdu", "PDU decode (P-DATA-TF -> PDV items)")
    patch(dul, "_send", "PDU send (encode + socket send)")
    patch(guard, "_receive", "PDU read (socket recv of header and body)")
    patch(guard, "_bounded_read_pdu_data", "PDU read + decode + queue (guard)")
    patch(pynetdicom.fsm.StateMachine, "do_action", "FSM action (incl. DIMSE assembly)")
    patch(pynetdicom.dimse.DIMSEServiceProvider, "receive_primitive", "DIMSE receive_primitive")
    patch(pynetdicom.dimse_messages.DIMSEMessage, "decode_msg", "DIMSE decode_msg (PDV assembly)")
    patch(
        pynetdicom.dimse_messages.DIMSEMessage,
        "message_to_primitive",
        "DIMSE message_to_primitive",
    )
    patch(pynetdicom.dimse.DIMSEServiceProvider, "send_msg", "DIMSE send_msg (response encode)")
    patch(pynetdicom.association.Association, "_serve_request", "association _serve_request")
    patch(scp.DicomNode, "_on_store", "C-STORE handler (all)")
    patch(pynetdicom.events.Event, "encoded_dataset", "  event.encoded_dataset()")
    patch(scp, "parse_dataset", "  parse_dataset (structural check + header)")
    patch(scp, "encode_file_meta", "  encode_file_meta")
    patch(spool.Spool, "write", "  spool.write (all; the node's path before begin_write)")
    patch(spool.Spool, "begin_write", "  spool.begin_write (hash; hands the file to a thread)")
    patch(spool.Spool, "_store", "  [spool thread] create, write, fsync, rename, folder fsync")
    patch(
        getattr(spool, "PendingWrite", None),
        "wait",
        "    [in the transaction] wait for the fsync thread",
    )
    patch(spool, "content_sha256", "    sha256 of the dataset")
    patch(os, "fsync", "    os.fsync (file and folders)")
    patch(os, "open", "    os.open (create the temporary file, and folders)")
    patch(os, "replace", "    os.replace (rename)")
    patch(spool, "_fsync_directory", "    folder fsync")
    patch(StudyStore, "record_instance", "  PostgreSQL record_instance (all, commit included)")
    patch(psycopg.Connection, "execute", "    psycopg execute (pool check, statement)")
    patch(psycopg.Transaction, "__exit__", "    psycopg commit")
    if use_cprofile:
        dul.run_reactor = profiled(dul.run_reactor)  # type: ignore[method-assign]
        original = reactor._run_reactor
        reactor._run_reactor = profiled(original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--pdu", type=int, default=0, help="storescu --max-send-pdu (0: default)")
    args = parser.parse_args()
    instrument(args.cprofile)

    from pydicom import config as pydicom_config

    from integrations.db.connection import DATABASE_WAIT_SECONDS, open_database
    from integrations.db.store import StudyStore
    from integrations.dicom.scp import DicomNode
    from integrations.dicom.spool import Spool
    from integrations.settings import load_settings

    with (
        tempfile.TemporaryDirectory(prefix="pacsflow-profile-") as scratch,
        scratch_database() as url,
    ):
        work = Path(scratch)
        files = make_images(work / "images", args.images, args.size)
        file_kb = files[0].stat().st_size / 1024
        storage = work / "storage"
        os.environ.update(
            {
                "PACSFLOW_CONFIG": "",
                "PACSFLOW_NODE__PORT": str(free_port()),
                "PACSFLOW_NODE__AE_TITLE": "PACSFLOW",
                "PACSFLOW_NODE__STORAGE_DIR": str(storage),
                "PACSFLOW_NODE__ALLOWED_CALLERS": '["BENCH"]',
                "PACSFLOW_DATABASE__URL": url,
            }
        )
        settings = load_settings(None, search=False)
        pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
        database = open_database(
            settings, synchronous_commit=True, checkout_timeout=DATABASE_WAIT_SECONDS
        )
        node = DicomNode(settings.node, StudyStore(database), Spool(settings.node.spool_dir))
        node.start()
        try:
            send(files[:5], node.address[1], "PACSFLOW")  # warm up (connections, folders)
            TIMES.clear()
            PROFILES.clear()
            options = ["--max-send-pdu", str(args.pdu)] if args.pdu else []
            cpu = time.process_time()
            elapsed = send(files, node.address[1], "PACSFLOW", options)
            cpu = time.process_time() - cpu
            time.sleep(0.3)
        finally:
            node.stop()
            database.close()
    count = len(files)
    print(
        f"{count} images of {file_kb:.0f} KB on one association: "
        f"{count / elapsed:.1f} images/s, {elapsed / count * 1000:.2f} ms per instance wall, "
        f"node CPU {cpu / count * 1000:.2f} ms per instance"
    )
    print(f"{'step':58s} {'ms/instance':>11s} {'calls/instance':>15s}")
    for step, (ns, calls) in TIMES.items():
        print(f"{step:58s} {ns / count / 1e6:11.3f} {calls / count:15.1f}")
    if PROFILES:
        stream = io.StringIO()
        for profile in PROFILES:
            profile.create_stats()
        stats = pstats.Stats(*PROFILES, stream=stream)
        stats.sort_stats("tottime").print_stats(30)
        print(stream.getvalue())


if __name__ == "__main__":
    main()
