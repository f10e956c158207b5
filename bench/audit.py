"""Audit trail benchmark: what auditing costs the node, and how fast records reach a collector.

Usage: ``python -m bench.audit [--images 200] [--repeats 3] [--records 500]``.

- Ingest: dcmtk storescu sends the same N images over one association to ``pacsflow node``
  with ``[audit] enabled`` true and false, in alternating order, in the same run; the ratio is the
  number to watch (target >= 0.95: one audit row per association, nothing per instance).
- Trail: ``--records`` logins appended through :class:`AuditTrail` (one transaction with
  the WAL flush each), then sent by :class:`AuditSender` over TCP (octet counting) to a
  reader thread on localhost.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.common import node_process, scratch_database
from bench.ingest import make_images, send
from integrations.audit.sender import AuditSender
from integrations.audit.trail import AuditTrail
from integrations.db.connection import open_database
from integrations.settings import load_settings


def ingest_rates(files: list[Path], work: Path, repeats: int) -> dict[bool, list[float]]:
    rates: dict[bool, list[float]] = {True: [], False: []}
    for attempt in range(repeats):
        # The order changes each repeat: the first of a pair ran faster on this machine.
        for enabled in (True, False) if attempt % 2 == 0 else (False, True):
            with scratch_database() as database_url:
                storage = work / f"node-{attempt}-{enabled}" / "storage"
                storage.mkdir(parents=True)
                with node_process(
                    storage, database_url, PACSFLOW_AUDIT__ENABLED=str(enabled).lower()
                ) as port:
                    rates[enabled].append(len(files) / send(files, port, "PACSFLOW"))
            shutil.rmtree(storage.parent)
    return rates


def reader(server: socket.socket, received: list[int]) -> None:
    connection, _ = server.accept()
    with connection:
        while data := connection.recv(65536):
            received[0] += data.count(b"<AuditMessage>")


def trail_rates(count: int) -> tuple[float, float]:
    with scratch_database() as database_url:
        server = socket.create_server(("127.0.0.1", 0))
        received = [0]
        threading.Thread(target=reader, args=(server, received), daemon=True).start()
        settings = load_settings(
            None,
            search=False,
            database={"url": database_url},
            audit={
                "syslog_host": "127.0.0.1",
                "syslog_port": server.getsockname()[1],
                "syslog_transport": "tcp",
            },
        )
        database = open_database(settings)
        trail = AuditTrail(database, settings)
        started = time.perf_counter()
        for index in range(count):
            trail.user_login(f"user-{index}", "10.0.0.1", success=True)
        append = count / (time.perf_counter() - started)
        sender = AuditSender(database, settings)
        started = time.perf_counter()
        sent = sender.drain(timeout=600)
        while received[0] < count and time.perf_counter() - started < 60:
            time.sleep(0.01)
        send_rate = sent / (time.perf_counter() - started)
        sender.close()
        database.close()
        server.close()
        assert received[0] == count, f"collector got {received[0]} of {count}"
        return append, send_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--records", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pacsflow-bench-") as scratch:
        work = Path(scratch)
        files = make_images(work / "images", args.images)
        rates = ingest_rates(files, work, args.repeats)
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"{args.images} images, one association, {args.repeats} repeats (alternating)")
    print(f"node, audit enabled : {on:7.1f} images/s  {[round(r) for r in rates[True]]}")
    print(f"node, audit disabled: {off:7.1f} images/s  {[round(r) for r in rates[False]]}")
    print(f"ratio enabled/disabled: {on / off:.2f}  (target >= 0.95)")
    append, send_rate = trail_rates(args.records)
    print(f"audit records appended: {append:7.1f} records/s ({args.records} logins)")
    print(f"audit records sent (tcp, octet counting, localhost): {send_rate:7.1f} records/s")


if __name__ == "__main__":
    main()
