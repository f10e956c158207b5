"""ADT ingest and ORU delivery throughput, each with a reference measured in the same run (I/O).

    python -m bench.hl7 [--adt 2000] [--oru 1000] [--connections 1 4] [--baseline-tree DIR...]
                        [--oru-build 40]

ADT ingest: the ``pacsflow hl7-listener`` process (parse, store, apply to the patient context
in PostgreSQL, ACK after commit) receives N ADT messages (A01/A02/A08/A03 over 200 patients)
over each number of parallel MLLP connections given, each waiting for every ACK as an interface
engine does. On every AA the client checks, on its own database connection, that the message
is already in ``hl7_inbox``: an AA before the commit fails the run. Reference: the same
messages to a bare MLLP responder (``tests.peers.mllp_peer``, answers AA, stores nothing).
With ``--baseline-tree`` (a checkout of another revision, e.g. ``git worktree add --detach
/work/wt/hl7-baseline main``) the listener of that tree is measured in the same run with the
same messages, each in a fresh database (several trees may be given, e.g. the code before a
change and the pre-hl7apy code). Also printed: hl7apy's ``parse_message`` alone.

ORU build (``--oru-build N``): ``build_oru`` of a chest X-ray result with four findings, N
times in a fresh process of this tree and of each baseline tree, interleaved, in ms/message.

ORU delivery: N result documents queued in the HL7 outbox (100 patients, chest X-ray results
with four findings) are drained by the outbox sender (claim, render the ORU with the ADT context,
send, wait for AA, record) to the MLLP receiver process. Reference: the same rendered messages
sent by a plain MLLP client with no database. Also: the same drain with pre-rendered payloads.

The database is a fresh one on the local PostgreSQL (``PACSFLOW_BENCH_POSTGRES``), dropped after.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from deployments.orthanc import free_port
from integrations.db.connection import open_database
from integrations.db.schema import migrate
from integrations.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_POSTGRES = os.environ.get(
    "PACSFLOW_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
START, END = b"\x0b", b"\x1c\r"


@contextmanager
def scratch_database() -> Iterator[str]:
    name = f"pacsflow_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SYSTEM_POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = SYSTEM_POSTGRES.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    try:
        yield url
    finally:
        with psycopg.connect(SYSTEM_POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def process(argv: list[str], port: int, tree: Path = ROOT) -> Iterator[None]:
    log = tempfile.NamedTemporaryFile(prefix="bench-hl7-", suffix=".log", delete=False)  # noqa: SIM115
    child = subprocess.Popen(
        argv,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port)
        yield
    finally:
        child.send_signal(2)
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
        log.close()


def responder(port: int, folder: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.peers.mllp_peer",
        "--port",
        str(port),
        "--dir",
        str(folder),
    ]


class Connection:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, payload: bytes) -> bytes:
        self.sock.sendall(START + payload + END)
        while END not in self.buffer:
            self.buffer += self.sock.recv(65536)
        answer, self.buffer = self.buffer.split(END, 1)
        return answer

    def close(self) -> None:
        self.sock.close()


def adt_messages(count: int) -> list[bytes]:
    from tests.emr_samples import adt

    events = [("A01", "WARD-A"), ("A02", "ICU"), ("A08", "ICU"), ("A03", "ICU")]
    messages = []
    for index in range(count):
        event, ward = events[(index // 200) % 4]
        mrn = str(100000 + index % 200)
        messages.append(adt(event, f"B{index:07d}", mrn=mrn, ward=ward).encode("utf-8"))
    return messages


def send_all(
    port: int, messages: list[bytes], connections: int, database_url: str | None = None
) -> float:
    """Messages per second over ``connections`` parallel MLLP connections; checks every ACK,
    and with ``database_url`` that each acknowledged message was committed before its AA."""
    import threading

    chunks = [messages[i::connections] for i in range(connections)]
    failures: list[str] = []

    def run(chunk: list[bytes]) -> None:
        connection = Connection(port)
        check = psycopg.connect(database_url, autocommit=True) if database_url else None
        for message in chunk:
            answer = connection.exchange(message)
            if b"MSA|AA|" not in answer and b"MSA|CA|" not in answer:
                failures.append(f"not acknowledged AA: {answer[:200]!r}")
            elif check is not None:
                msh = message.split(b"\r", 1)[0].decode().split("|")
                row = check.execute(
                    "SELECT 1 FROM hl7_inbox WHERE sending_application = %s"
                    " AND sending_facility = %s AND message_control_id = %s",
                    (msh[2], msh[3], msh[9]),
                ).fetchone()
                if row is None:
                    failures.append(f"AA for {msh[9]} before it was committed")
        connection.close()
        if check is not None:
            check.close()

    threads = [threading.Thread(target=run, args=(chunk,)) for chunk in chunks]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} failures, e.g. {failures[0]}")
    return len(messages) / elapsed


def listener_rate(tree: Path, messages: list[bytes], connections: int) -> tuple[float, int, int]:
    """(msg/s, applied rows, patients) of the hl7-listener of ``tree`` in a fresh database."""
    with scratch_database() as url, tempfile.TemporaryDirectory() as folder:
        port = free_port()
        config = Path(folder) / "pacsflow.toml"
        config.write_text(f'[database]\nurl = "{url}"\n\n[hl7]\nport = {port}\n')
        argv = [sys.executable, "-m", "deployments.cli", "--config", str(config), "hl7-listener"]
        with process(argv, port, tree):
            warm = adt_messages(100)
            send_all(port, [m.replace(b"|B0", b"|W0") for m in warm], connections)
            rate = send_all(port, messages, connections, url)
        with psycopg.connect(url) as conn:
            applied = conn.execute(
                "SELECT count(*) FROM hl7_inbox WHERE state = 'applied'"
            ).fetchone()[0]
            patients = conn.execute("SELECT count(*) FROM patient_context").fetchone()[0]
    return rate, applied, patients


TARGET = 100.0  # ADT messages/s (issue 12); a hospital feed runs at a few, a network's peak at tens


def bench_adt(count: int, connection_counts: list[int], baselines: list[Path]) -> None:
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    messages = adt_messages(count)
    sample = [message.decode() for message in messages[:200]]
    started = time.perf_counter()
    for text in sample:
        parse_message(text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)
    hl7apy_ms = (time.perf_counter() - started) / len(sample) * 1000

    for connections in connection_counts:
        with tempfile.TemporaryDirectory() as folder:
            port = free_port()
            with process(responder(port, Path(folder)), port):
                send_all(port, messages[:100], connections)  # warm-up
                reference = send_all(port, messages, connections)
        rate, applied, patients = listener_rate(ROOT, messages, connections)
        print(f"ADT ingest, {count} messages, {connections} connection(s):")
        print(f"  hl7-listener, this tree ({ROOT.name}): {rate:8.1f} msg/s")
        for baseline in baselines:
            base_rate, base_applied, _ = listener_rate(baseline, messages, connections)
            print(f"  hl7-listener, baseline ({baseline.name}):  {base_rate:8.1f} msg/s")
            print(f"  ratio this tree / {baseline.name}: {rate / base_rate:.2f}")
            if base_applied != applied:
                print(f"  {baseline.name} applied {base_applied} messages, this tree {applied}")
        print(f"  bare MLLP responder (reference, stores nothing): {reference:8.1f} msg/s")
        print(f"  ratio listener / reference: {rate / reference:.2f}")
        print(
            f"  target >= {TARGET:.0f} msg/s, every AA after its commit (checked per message):"
            f" {'met' if rate >= TARGET else 'NOT met'}"
        )
        print(
            f"  applied {applied} messages ({applied - 100} measured + 100 warm-up), {patients} patients"
        )
    print(
        f"  hl7apy parse_message alone: {hl7apy_ms:.2f} ms/message (ceiling {1000 / hl7apy_ms:.0f} msg/s)"
    )


ORU_BUILD = """
import sys, time
from datetime import UTC, datetime
from integrations.hl7.oru import MessageRoute, build_oru
from tests.emr_samples import result_document, study_facts
document, now = result_document(study=study_facts()), datetime.now(UTC)
build_oru(document, None, MessageRoute(), now)
started = time.perf_counter()
for _ in range(int(sys.argv[1])):
    build_oru(document, None, MessageRoute(), now)
print((time.perf_counter() - started) / int(sys.argv[1]) * 1000)
"""


def oru_build_ms(tree: Path, count: int) -> float:
    """ms per ``build_oru`` in a fresh process of ``tree``."""
    done = subprocess.run(
        [sys.executable, "-c", ORU_BUILD, str(count)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def bench_oru_build(count: int, baselines: list[Path], rounds: int = 3) -> None:
    trees = [ROOT, *baselines]
    times: dict[Path, list[float]] = {tree: [] for tree in trees}
    for _ in range(rounds):  # interleaved, so that a change in load hits every tree alike
        for tree in trees:
            times[tree].append(oru_build_ms(tree, count))
    best = {tree: min(found) for tree, found in times.items()}
    print(f"ORU build, build_oru x {count}, best of {rounds} interleaved rounds:")
    print(f"  this tree ({ROOT.name}): {best[ROOT]:7.2f} ms/message")
    for baseline in baselines:
        print(
            f"  baseline ({baseline.name}): {best[baseline]:7.2f} ms/message,"
            f" ratio this tree / baseline {best[ROOT] / best[baseline]:.2f}"
        )


def bench_oru(count: int) -> None:
    from integrations.db.outbox import OutboxStore
    from integrations.emr.enqueue import enqueue_result
    from integrations.hl7.mllp import MllpClient
    from integrations.hl7.sender import Hl7Sender, encode_payload
    from tests.emr_samples import result_document, study_facts

    with scratch_database() as url, tempfile.TemporaryDirectory() as folder:
        port = free_port()
        settings = load_settings(None, search=False, database={"url": url}, emr={"port": port})
        database = open_database(settings)
        with database.connection() as conn:
            for index in range(count):
                conn.execute(
                    "INSERT INTO studies (study_instance_uid, patient_id, issuer_of_patient_id, state)"
                    " VALUES (%s, %s, 'HOSP', 'done')",
                    (f"1.2.826.0.1.3680043.8.498.{index + 1}", str(5000 + index % 100)),
                )
        for index in range(count):
            uid = f"1.2.826.0.1.3680043.8.498.{index + 1}"
            study = study_facts(study_instance_uid=uid, patient_id=str(5000 + index % 100))
            enqueue_result(
                database, settings, result_document(study=study, critical=index % 5 == 0)
            )
        with process(responder(port, Path(folder)), port):
            sender = Hl7Sender(database, settings)
            started = time.perf_counter()
            drained = sender.drain(timeout=600)
            rendered_rate = drained / (time.perf_counter() - started)
            sender.close()
            with database.connection() as conn:
                rows = conn.execute(
                    "SELECT message_control_id, patient_key, payload FROM hl7_outbox ORDER BY id"
                ).fetchall()
                conn.execute("TRUNCATE hl7_outbox")
            payloads = [row["payload"] for row in rows]
            outbox = OutboxStore(database)
            for row in rows:
                outbox.enqueue(
                    message_control_id=row["message_control_id"] + "P",
                    message_type="ORU^R01",
                    payload=row["payload"].replace(
                        row["message_control_id"], row["message_control_id"] + "P"
                    ),
                    study_instance_uid=None,
                    patient_key=row["patient_key"],
                )
            sender = Hl7Sender(database, settings)
            started = time.perf_counter()
            drained_payloads = sender.drain(timeout=600)
            prerendered_rate = drained_payloads / (time.perf_counter() - started)
            sender.close()
            client = MllpClient("127.0.0.1", port)
            encoded = [encode_payload(payload) for payload in payloads]
            started = time.perf_counter()
            for data in encoded:
                client.send(data)
            reference = len(encoded) / (time.perf_counter() - started)
            client.close()
        database.close()
    print(f"ORU delivery, {count} results (one ORU each, 6 OBX), 100 patients:")
    print(f"  outbox sender, rendered at send time:      {rendered_rate:8.1f} msg/s")
    print(f"  outbox sender, payloads queued ready-made: {prerendered_rate:8.1f} msg/s")
    print(f"  plain MLLP client, no database (reference): {reference:8.1f} msg/s")
    print(f"  ratio sender (rendered) / reference: {rendered_rate / reference:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adt", type=int, default=2000, help="ADT messages to send (0: skip)")
    parser.add_argument("--oru", type=int, default=1000, help="results to deliver (0: skip)")
    parser.add_argument(
        "--connections", type=int, nargs="+", default=[1, 4], help="parallel ADT connections"
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        nargs="*",
        default=[],
        help="other checkouts whose listener (and ORU build) are measured too",
    )
    parser.add_argument(
        "--oru-build", type=int, default=40, help="build_oru calls per tree and round (0: skip)"
    )
    args = parser.parse_args()
    print(
        f"bench/hl7 on {os.cpu_count()} CPUs, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC,"
        f" load average {' '.join(f'{load:.2f}' for load in os.getloadavg())}"
    )
    if args.adt:
        bench_adt(args.adt, args.connections, args.baseline_tree)
    if args.oru_build:
        bench_oru_build(args.oru_build, args.baseline_tree)
    if args.oru:
        bench_oru(args.oru)
    print(f"load average at the end: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
