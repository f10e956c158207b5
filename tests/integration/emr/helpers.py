"""Shared pieces of the EMR integration tests: an ADT sender and a running listener."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from deployments.orthanc import free_port
from integrations.db.connection import DATABASE_WAIT_SECONDS, Database, open_database
from integrations.db.patients import PatientStore
from integrations.emr.identifiers import MrnRules
from integrations.hl7.listener import AdtListener
from integrations.settings import Settings


class AdtSender:
    """An ADT system's MLLP client, written here independently of pacsflow's framing."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def send(self, message: str | bytes, encoding: str = "utf-8") -> str:
        raw = message.encode(encoding) if isinstance(message, str) else message
        self.sock.sendall(b"\x0b" + raw + b"\x1c\r")
        while b"\x1c\r" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("listener closed the connection")
            self.buffer += data
        frame, self.buffer = self.buffer.split(b"\x1c\r", 1)
        return frame.lstrip(b"\x0b").decode("ascii")

    def close(self) -> None:
        self.sock.close()


def msa(ack: str) -> tuple[str, str, str]:
    """(MSA-1, MSA-2, ERR-8 or MSA-3) of an ACK."""
    segments = {line[:3]: line.split("|") for line in ack.strip("\r").split("\r")}
    fields = segments["MSA"]
    reason = (
        segments["ERR"][8]
        if "ERR" in segments and len(segments["ERR"]) > 8
        else (fields[3] if len(fields) > 3 else "")
    )
    return fields[1], fields[2], reason


@dataclass
class RunningListener:
    port: int
    database: Database
    patients: PatientStore

    def sender(self) -> AdtSender:
        return AdtSender(self.port)


@contextmanager
def running_listener(settings: Settings) -> Iterator[RunningListener]:
    database = open_database(settings, checkout_timeout=DATABASE_WAIT_SECONDS)  # as the command
    patients = PatientStore(database, MrnRules.from_settings(settings.mrn))
    server = AdtListener(settings.hl7, patients).server(port=free_port())
    server.start()
    try:
        yield RunningListener(server.address[1], database, patients)
    finally:
        server.stop()
        database.close()


def insert_study(
    database: Database, study_instance_uid: str, patient_id: str, issuer: str = "HOSP"
) -> None:
    """A closed, analysed study row (what the node and the flow leave behind)."""
    with database.connection() as conn:
        conn.execute(
            "INSERT INTO studies (study_instance_uid, patient_id, issuer_of_patient_id, patient_name,"
            " accession_number, state) VALUES (%s, %s, %s, 'MÜLLER^JÜRGEN', %s, 'done')"
            " ON CONFLICT DO NOTHING",
            (study_instance_uid, patient_id, issuer, f"ACC-{study_instance_uid[-6:]}"),
        )
        conn.execute(
            "INSERT INTO worklist (study_instance_uid, accession_number, patient_id, patient_name,"
            " modality, status) VALUES (%s, %s, %s, 'MÜLLER^JÜRGEN', 'DX', 'results stored')"
            " ON CONFLICT DO NOTHING",
            (study_instance_uid, f"ACC-{study_instance_uid[-6:]}", patient_id),
        )


def fast_emr(port: int, **overrides: object) -> dict[str, object]:
    """[emr] settings with a retry schedule in tenths of seconds, for tests."""
    return {
        "port": port,
        "retry_delays_seconds": [0.2, 0.4, 0.8, 1.0],
        "retry_jitter": 0.0,
        "connect_timeout_seconds": 1.0,
        "ack_timeout_seconds": 1.0,
        "poll_seconds": 0.1,
        **overrides,
    }


@contextmanager
def running_sender(sender) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """An outbox sender's loop in a background thread until the block ends."""
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=sender.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        yield sender
    finally:
        stop.set()
        thread.join(30)
