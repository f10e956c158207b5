"""A stand-alone MLLP receiver playing the EMR: records every message, answers on demand (I/O).

Run as ``python -m tests.peers.mllp_peer --port P --dir D``. It shares no code with
pacsflow's HL7 modules (its framing and ACKs are written here, its validation is hl7apy's),
so a test against it is a test against an independent peer.

- Every received message is appended to ``D/received.jsonl`` (flushed before answering):
  arrival time, control ID, message type, the text, the answer given, and with
  ``--validate`` the result of hl7apy's strict parse and ``validate()``.
- What to answer is read from ``D/answers.json`` before each message:
  ``{"default": "AA", "queue": ["AE", "none"], "by_control_id": {"123": ["AR"]},
  "delay_seconds": 0}``. Answers: AA, AE, AR, ``none`` (read it, never answer, keep the
  connection), ``close`` (close the connection without answering), ``garbage`` (a framed
  answer that is no HL7 ACK) and ``wrong-id`` (an AA for another control ID). Queued answers are used
  up one per message, ``by_control_id`` ones first.
- With ``--tls-cert C --tls-key K`` (and ``--tls-ca A``: client certificates required and
  checked against A) it speaks MLLP over TLS only, with Python's default server settings;
  each handshake outcome is appended to ``D/handshakes.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import ssl
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.peers.serving import serve_until_terminated

START, END = b"\x0b", b"\x1c\x0d"


class Script:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "answers.json"
        self.lock = threading.Lock()
        self.mtime = -1.0
        self.data: dict[str, Any] = {}
        self.sequence = 0

    def answer_for(self, control_id: str) -> tuple[str, float, int]:
        with self.lock:
            try:
                mtime = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                mtime = 0
            if mtime != self.mtime:
                self.mtime = mtime
                self.data = json.loads(self.path.read_text()) if mtime else {}
            self.sequence += 1
            answer = self.data.get("default", "AA")
            per_id = self.data.get("by_control_id", {}).get(control_id)
            if per_id:
                answer = per_id.pop(0)
            elif self.data.get("queue"):
                answer = self.data["queue"].pop(0)
            return answer, float(self.data.get("delay_seconds", 0)), self.sequence


def ack(message: str, code: str) -> bytes:
    segments = message.replace("\n", "\r").split("\r")
    msh = segments[0]
    fields = msh.split(msh[3])
    control_id = fields[9] if len(fields) > 9 else ""
    version = fields[11] if len(fields) > 11 else "2.5.1"
    trigger = fields[8].split("^")[1] if len(fields) > 8 and "^" in fields[8] else ""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    text = {"AE": "simulated application error", "AR": "simulated rejection"}.get(code, "")
    lines = [
        f"MSH|^~\\&|EMR|HOSPITAL|{fields[2]}|{fields[3]}|{now}||ACK^{trigger}^ACK|A{time.time_ns() % 10**12}|P|{version}",
        f"MSA|{code}|{control_id}" + (f"|{text}" if text else ""),
    ]
    if text:
        lines.append(f"ERR||||E||||{text}")
    return ("\r".join(lines) + "\r").encode("ascii")


def validate(text: str) -> str:
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    try:
        parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True).validate()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "ok"


class Handler(socketserver.BaseRequestHandler):
    server: Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.server.tls is not None:
            try:
                sock = self.server.tls.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError) as error:
                self.server.handshake(f"refused: {error}")
                return
            self.server.handshake(f"ok {sock.version()}")
        buffer = b""
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while START in buffer and END in buffer:
                start = buffer.index(START)
                end = buffer.index(END, start)
                raw, buffer = buffer[start + 1 : end], buffer[end + 2 :]
                if not self.respond(sock, raw):
                    return

    def respond(self, sock: socket.socket, raw: bytes) -> bool:
        server = self.server
        charset = "utf-8"
        head = raw.split(b"\r", 1)[0].split(b"|")
        if len(head) > 17 and head[17].strip().upper() == b"8859/1":
            charset = "latin-1"
        text = raw.decode(charset, errors="replace")
        fields = text.split("\r", 1)[0].split("|")
        control_id = fields[9] if len(fields) > 9 else ""
        answer, delay, sequence = server.script.answer_for(control_id)
        record = {
            "sequence": sequence,
            "at": time.time(),
            "control_id": control_id,
            "message_type": fields[8] if len(fields) > 8 else "",
            "answer": answer,
            "text": text,
        }
        if server.validate:
            record["validation"] = validate(text)
        with server.lock:
            server.log.write(json.dumps(record) + "\n")
            server.log.flush()
        if delay:
            time.sleep(delay)
        if answer == "none":
            return True
        if answer == "close":
            return False
        if answer == "garbage":  # a broken interface engine: framed, but no HL7 ACK
            sock.sendall(START + b"HTTP/1.1 500 Internal Server Error\r\n" + END)
            return True
        if answer == "wrong-id":  # an ACK, but for another message
            sock.sendall(START + ack(text.replace(control_id, "OTHER" + control_id, 1), "AA") + END)
            return True
        sock.sendall(START + ack(text, answer) + END)
        return True


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(
        self, port: int, folder: Path, validate: bool, tls: ssl.SSLContext | None = None
    ) -> None:
        self.tls = tls
        self.handshakes = folder / "handshakes.jsonl"
        self.script = Script(folder)
        self.validate = validate
        self.lock = threading.Lock()
        self.log = open(folder / "received.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        super().__init__(("127.0.0.1", port), Handler)

    def handshake(self, outcome: str) -> None:
        with self.lock, open(self.handshakes, "a", encoding="utf-8") as log:
            log.write(json.dumps({"at": time.time(), "outcome": outcome}) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--validate", action="store_true")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-ca")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_ca:
            tls.load_verify_locations(cafile=args.tls_ca)
            tls.verify_mode = ssl.CERT_REQUIRED
    return serve_until_terminated(Server(args.port, args.dir, args.validate, tls), args.dir)


if __name__ == "__main__":
    sys.exit(main())
