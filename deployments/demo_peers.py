"""Stand-ins for the hospital systems the demo has no real one of: an EMR and an inbox (I/O).

* :class:`DemoEmr` is an HL7 MLLP receiver that acknowledges every message with AA and keeps
  what it received, so the demo shows each ORU^R01 (and priority update) arriving.
* :class:`DemoInbox` is an SMTP server that keeps every mail, so the demo shows the on-call
  radiologist being paged for a Critical finding.

They are demo peers only: a site points ``[emr]`` and ``[escalation]`` at its own systems.
"""

from __future__ import annotations

import datetime
import socketserver
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any

from integrations.hl7.ack import AcknowledgmentCode, build_ack
from integrations.hl7.adt import read_header
from integrations.hl7.framing import FrameDecoder, frame
from integrations.hl7.header import format_dtm


@dataclass(frozen=True)
class Received:
    at: float  # time.time()
    kind: str  # "ORU^R01", "ORM^O01", ... or the mail subject
    text: str
    to: tuple[str, ...] = ()  # a mail's envelope recipients


@dataclass
class Recorder:
    items: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, text: str, to: tuple[str, ...] = ()) -> None:
        with self.lock:
            self.items.append(Received(time.time(), kind, text, to))

    def matching(self, needle: str) -> list[Received]:
        with self.lock:
            return [item for item in self.items if needle in item.text]


class _MllpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: Any = self.server
        decoder = FrameDecoder()
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            for message in decoder.feed(data):
                text = message.decode("utf-8", errors="replace")
                header = read_header(text)
                server.recorder.add(header.message_type, text)
                ack = build_ack(
                    header,
                    AcknowledgmentCode.APPLICATION_ACCEPT,
                    control_id=f"ACK{header.message_control_id}"[:20],
                    timestamp=format_dtm(datetime.datetime.now()),
                    sending_application="DEMO_EMR",
                    sending_facility="DEMO",
                )
                self.request.sendall(frame(ack.encode("utf-8")))


class DemoEmr:
    """An MLLP receiver on ``port`` that answers AA and records every message."""

    def __init__(self, host: str, port: int) -> None:
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer((host, port), _MllpHandler)
        self.server.daemon_threads = True
        self.recorder = Recorder()
        self.server.recorder = self.recorder  # type: ignore[attr-defined]
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="demo-emr", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class DemoInbox:
    """An SMTP server on ``port`` that keeps every mail (needs aiosmtpd, a dev dependency)."""

    def __init__(self, host: str, port: int) -> None:
        from aiosmtpd.controller import Controller

        recorder = Recorder()

        class Keep:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                mail = message_from_bytes(envelope.content, policy=default_policy)
                body = mail.get_body(preferencelist=("plain",))
                recorder.add(
                    str(mail.get("Subject", "")),
                    body.get_content() if body else "",
                    tuple(str(address) for address in envelope.rcpt_tos),
                )
                return "250 Message accepted"

        self.recorder = recorder
        self.controller = Controller(Keep(), hostname=host, port=port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
