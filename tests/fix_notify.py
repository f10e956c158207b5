"""Real local peers that receive notifications: a recording HTTP server (webhook and pager
broker) and a recording SMTP server (aiosmtpd), each on a free loopback port (I/O).

Both record what arrived and when (``time.time()`` at arrival), so tests assert on the
moment a person's device would have been reached. The HTTP server answers chosen status codes
(a queue per path, then 200) and can be stopped and started again on the same port to
simulate an outage; the SMTP server can answer a chosen failure code.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from deployments.orthanc import free_port


@dataclass(frozen=True)
class RecordedRequest:
    received_at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return ""


class _Handler(BaseHTTPRequestHandler):
    server: _RecordingServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(length)
        recorder = self.server.recorder
        delay = recorder.delay(self.path)
        if delay:
            time.sleep(delay)  # a peer that accepts the connection and then hangs
        status = recorder.next_status(self.path)
        recorder.record(
            RecordedRequest(
                time.time(), "POST", self.path, dict(self.headers.items()), body, status
            )
        )
        payload = json.dumps({"status": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _RecordingServer(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], recorder: RecordingHttpServer) -> None:
        self.recorder = recorder
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # a client that gave up on a hanging answer: expected in outage tests, not news
        pass


@dataclass
class RecordingHttpServer:
    """An HTTP server that records every POST and answers the statuses it is told to."""

    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    requests: list[RecordedRequest] = field(default_factory=list)
    _statuses: dict[str, deque[int]] = field(default_factory=dict)
    _default: dict[str, int] = field(default_factory=dict)
    _delays: dict[str, float] = field(default_factory=dict)
    _server: _RecordingServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> None:
        self._server = _RecordingServer((self.host, self.port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: connections are refused until :meth:`start` (an outage)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def respond_with(self, path: str, *statuses: int, then: int = 200) -> None:
        """Answer requests to ``path`` with ``statuses`` in order, then ``then``."""
        with self._lock:
            self._statuses[path] = deque(statuses)
            self._default[path] = then

    def hang(self, path: str, seconds: float) -> None:
        """Hold every request to ``path`` this long before answering (a black-holed peer)."""
        with self._lock:
            self._delays[path] = seconds

    def delay(self, path: str) -> float:
        with self._lock:
            return self._delays.get(path.split("?")[0], 0.0)

    def next_status(self, path: str) -> int:
        bare = path.split("?")[0]
        with self._lock:
            queue = self._statuses.get(bare)
            if queue:
                return queue.popleft()
            return self._default.get(bare, 200)

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def received(self, path: str | None = None, status: int | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (path is None or r.path.split("?")[0] == path)
                and (status is None or r.status == status)
            ]

    def wait_for(
        self,
        path: str | None = None,
        count: int = 1,
        timeout: float = 30.0,
        status: int | None = None,
    ) -> list[RecordedRequest]:
        return _wait(lambda: self.received(path, status), count, timeout, f"POST {path}")


@dataclass(frozen=True)
class RecordedMail:
    received_at: float
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))


class _SmtpHandler:
    def __init__(self, recorder: RecordingSmtpServer) -> None:
        self.recorder = recorder

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if self.recorder.failure:
            return self.recorder.failure
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.recorder.record(
            RecordedMail(
                time.time(),
                envelope.mail_from,
                tuple(envelope.rcpt_tos),
                message,  # type: ignore[arg-type]
            )
        )
        return "250 Message accepted for delivery"


@dataclass
class RecordingSmtpServer:
    """An SMTP server (aiosmtpd) that records every message it accepts."""

    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    mails: list[RecordedMail] = field(default_factory=list)
    failure: str = ""  # e.g. "451 4.3.0 try later": refuse recipients with this reply
    _controller: Controller | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._controller = Controller(_SmtpHandler(self), hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def record(self, mail: RecordedMail) -> None:
        with self._lock:
            self.mails.append(mail)

    def received(self, to: str | None = None) -> list[RecordedMail]:
        with self._lock:
            return [m for m in self.mails if to is None or to in m.rcpt_tos]

    def wait_for(
        self, to: str | None = None, count: int = 1, timeout: float = 30.0
    ) -> list[RecordedMail]:
        return _wait(lambda: self.received(to), count, timeout, f"mail to {to}")


def _wait(read: Callable[[], list[Any]], count: int, timeout: float, what: str) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} x {what} within {timeout} s, got {len(found)}")
        time.sleep(0.02)


@pytest.fixture
def notify_http() -> Iterator[RecordingHttpServer]:
    """A recording HTTP peer (webhook receiver and pager broker) for one test."""
    server = RecordingHttpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def notify_smtp() -> Iterator[RecordingSmtpServer]:
    """A recording SMTP peer (e-mail and mail-to-SMS gateway) for one test."""
    server = RecordingSmtpServer()
    server.start()
    yield server
    server.stop()


def ops_team_escalation(webhook_url: str) -> dict[str, Any]:
    """An ``[escalation]`` with one operators' team, ``pacs-admin``, paged by webhook only."""
    return {
        "people": {"ops1": {"name": "Ops On Call", "email": "ops1@hospital.test"}},
        "teams": {
            "pacs-admin": {
                "channels": ["webhook"],
                "on_call": [{"person": "ops1"}],
                "webhook_url": webhook_url,
            }
        },
        "use_default_rules": False,
        "retry_delays_seconds": [0.05],
        "send_timeout_seconds": 2.0,
    }
