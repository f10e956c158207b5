"""RFC 5424 syslog messages carrying audit XML, RFC 6587 octet-counted framing, and the
parsers a collector (or a test) needs (pure).

IHE ITI TF-2 3.20 (Record Audit Event) fixes the header: facility 10 (security/authorization),
severity 5 (notice) for success and 4 (warning) for failures, MSGID ``IHE+RFC-3881`` (DICOM
PS3.15 A.6 writes ``DICOM+RFC3881``), no structured data, and the XML as the UTF-8 MSG,
preceded by the byte order mark RFC 5424 6.4 uses to say "this MSG is UTF-8".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

FACILITY_SECURITY = 10
SEVERITY_WARNING = 4
SEVERITY_NOTICE = 5
BOM = b"\xef\xbb\xbf"
NILVALUE = "-"
MAX_MESSAGE_BYTES = 1024 * 1024  # the largest frame a collector here accepts


def _header_field(value: str, limit: int) -> str:
    """A PRINTUSASCII header field (no spaces), NILVALUE when empty."""
    cleaned = "".join(char for char in value if 33 <= ord(char) <= 126)[:limit]
    return cleaned or NILVALUE


def format_message(
    xml: str,
    *,
    timestamp: datetime,
    hostname: str,
    app_name: str,
    procid: str,
    msgid: str,
    failure: bool = False,
) -> bytes:
    """One SYSLOG-MSG (RFC 5424 6): ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID - BOM XML``."""
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    severity = SEVERITY_WARNING if failure else SEVERITY_NOTICE
    header = " ".join(
        (
            f"<{FACILITY_SECURITY * 8 + severity}>1",
            timestamp.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            _header_field(hostname, 255),
            _header_field(app_name, 48),
            _header_field(procid, 128),
            _header_field(msgid, 32),
            NILVALUE,  # no STRUCTURED-DATA
        )
    )
    return header.encode("ascii") + b" " + BOM + xml.encode("utf-8")


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 3.4.1 / RFC 5425 4.3 framing: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode("ascii") + b" " + message


class FrameError(ValueError):
    """A byte stream that is not octet-counted syslog."""


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete octet-counted frames at the start of ``buffer``, and what remains."""
    frames = []
    while buffer:
        space = buffer.find(b" ", 0, 12)
        if space < 0:
            if len(buffer) >= 12 or not buffer.isdigit():
                raise FrameError(f"no MSG-LEN at the start of {buffer[:16]!r}")
            break
        length_text = buffer[:space]
        if not length_text.isdigit() or length_text.startswith(b"0"):
            raise FrameError(f"bad MSG-LEN {length_text!r}")
        length = int(length_text)
        if length > MAX_MESSAGE_BYTES:
            raise FrameError(f"frame of {length} bytes is too large")
        end = space + 1 + length
        if len(buffer) < end:
            break
        frames.append(buffer[space + 1 : end])
        buffer = buffer[end:]
    return frames, buffer


_HEADER = re.compile(
    rb"^<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) (?P<timestamp>\S+) (?P<hostname>\S+)"
    rb" (?P<app_name>\S+) (?P<procid>\S+) (?P<msgid>\S+) (?P<sd>-|(\[.*?\])+)(?: (?P<msg>.*))?$",
    re.DOTALL,
)


@dataclass(frozen=True)
class SyslogMessage:
    facility: int
    severity: int
    version: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    structured_data: str
    msg: str
    has_bom: bool


def parse_message(data: bytes) -> SyslogMessage:
    """Parse an RFC 5424 SYSLOG-MSG (raises ValueError when it is not one)."""
    match = _HEADER.match(data)
    if match is None:
        raise ValueError(f"not an RFC 5424 message: {data[:80]!r}")
    pri = int(match["pri"])
    if pri > 191:
        raise ValueError(f"PRI {pri} out of range")
    raw = match["msg"] or b""
    has_bom = raw.startswith(BOM)
    return SyslogMessage(
        facility=pri // 8,
        severity=pri % 8,
        version=int(match["version"]),
        timestamp=match["timestamp"].decode("ascii"),
        hostname=match["hostname"].decode("ascii"),
        app_name=match["app_name"].decode("ascii"),
        procid=match["procid"].decode("ascii"),
        msgid=match["msgid"].decode("ascii"),
        structured_data=match["sd"].decode("utf-8"),
        msg=(raw[len(BOM) :] if has_bom else raw).decode("utf-8"),
        has_bom=has_bom,
    )
