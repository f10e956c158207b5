"""A stand-alone syslog collector playing the site's audit record repository (I/O).

Run as ``python -m tests.peers.syslog_collector --port P --dir D --transport tcp|tls|udp``
(for tls also ``--cert``, ``--key`` and, to require a client certificate, ``--client-ca``).
It shares no code with pacsflow's audit modules: its RFC 6587 octet-counting, RFC 5424 and
AuditMessage parsing are written here, so a test against it is a test against an independent
peer.

Every message is appended to ``D/received.jsonl`` as it arrives: the syslog header fields,
whether the MSG starts with a BOM, the XML, and what the XML says (EventID, EventTypeCode,
outcome, the active participants' UserIDs, the patient and study participant object IDs),
or ``error`` when something did not parse. Failed TLS handshakes go to
``D/handshake_errors.txt``.
"""

from __future__ import annotations

import argparse
import json
import re
import socketserver
import ssl
import sys
import threading
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.peers.serving import serve_until_terminated

HEADER = re.compile(
    rb"^<(\d{1,3})>(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*?\]) ?(.*)$", re.DOTALL
)
BOM = b"\xef\xbb\xbf"


def describe(data: bytes, transport: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(),
        "transport": transport,
        "bytes": len(data),
    }
    match = HEADER.match(data)
    if match is None:
        entry["error"] = f"not RFC 5424: {data[:60]!r}"
        return entry
    pri, version, timestamp, hostname, app_name, procid, msgid, sd, msg = match.groups()
    entry.update(
        facility=int(pri) // 8,
        severity=int(pri) % 8,
        version=int(version),
        timestamp=timestamp.decode(),
        hostname=hostname.decode(),
        app_name=app_name.decode(),
        procid=procid.decode(),
        msgid=msgid.decode(),
        structured_data=sd.decode(),
        bom=msg.startswith(BOM),
    )
    text = msg.removeprefix(BOM).decode("utf-8")
    entry["xml"] = text
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        entry["error"] = f"XML: {error}"
        return entry
    event = root.find("EventIdentification")
    if root.tag != "AuditMessage" or event is None:
        entry["error"] = "no AuditMessage/EventIdentification"
        return entry
    event_id = event.find("EventID")
    entry["event_id"] = event_id.get("csd-code") if event_id is not None else None
    entry["event_types"] = [code.get("csd-code") for code in event.findall("EventTypeCode")]
    entry["action"] = event.get("EventActionCode")
    entry["outcome"] = event.get("EventOutcomeIndicator")
    entry["users"] = [
        {
            "id": participant.get("UserID"),
            "requestor": participant.get("UserIsRequestor"),
            "role": (participant.find("RoleIDCode").get("csd-code")  # type: ignore[union-attr]
                     if participant.find("RoleIDCode") is not None else None),
            "host": participant.get("NetworkAccessPointID"),
        }
        for participant in root.findall("ActiveParticipant")
    ]  # fmt: skip
    source = root.find("AuditSourceIdentification")
    entry["audit_source_id"] = source.get("AuditSourceID") if source is not None else None
    entry["patients"], entry["studies"] = [], []
    for item in root.findall("ParticipantObjectIdentification"):
        id_type = item.find("ParticipantObjectIDTypeCode")
        code = id_type.get("csd-code") if id_type is not None else None
        kind = (item.get("ParticipantObjectTypeCode"), item.get("ParticipantObjectTypeCodeRole"))
        if code == "2" and kind == ("1", "1"):
            entry["patients"].append(item.get("ParticipantObjectID"))
        elif code == "110180" and kind == ("2", "3"):
            entry["studies"].append(item.get("ParticipantObjectID"))
    return entry


class Recorder:
    def __init__(self, folder: Path, transport: str) -> None:
        self.path = folder / "received.jsonl"
        self.transport = transport
        self.lock = threading.Lock()

    def record(self, data: bytes) -> None:
        entry = describe(data, self.transport)
        with self.lock, self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
            out.flush()

    def handshake_failed(self, error: str) -> None:
        with self.lock, (self.path.parent / "handshake_errors.txt").open("a") as out:
            out.write(error + "\n")


def read_frames(stream: Any, recorder: Recorder) -> None:
    """RFC 6587 3.4.1 octet counting: MSG-LEN SP SYSLOG-MSG, repeated."""
    while True:
        length = b""
        while True:
            char = stream.read(1)
            if not char:
                return
            if char == b" ":
                break
            if not char.isdigit() or len(length) > 8:
                recorder.record(b"framing error: " + length + char)
                return
            length += char
        data = stream.read(int(length))
        if len(data) < int(length):
            return
        recorder.record(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--transport", choices=("tcp", "tls", "udp"), default="tcp")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca")
    args = parser.parse_args(argv)
    recorder = Recorder(args.dir, args.transport)
    server: socketserver.BaseServer
    if args.transport == "udp":

        class Datagram(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                recorder.record(self.request[0])

        server = socketserver.ThreadingUDPServer(("127.0.0.1", args.port), Datagram)
    else:
        context = None
        if args.transport == "tls":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(args.cert, args.key)
            if args.client_ca:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(args.client_ca)

        class Stream(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                connection = self.request
                if context is not None:
                    try:
                        connection = context.wrap_socket(connection, server_side=True)
                    except (ssl.SSLError, OSError) as error:  # also the fixture's port probe
                        recorder.handshake_failed(str(error))
                        return
                with connection.makefile("rb") as stream:
                    try:
                        read_frames(stream, recorder)
                    except (OSError, ssl.SSLError):
                        return

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        socketserver.ThreadingTCPServer.daemon_threads = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", args.port), Stream)
    return serve_until_terminated(server, args.dir)


if __name__ == "__main__":
    sys.exit(main())
