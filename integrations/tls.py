"""TLS for the node's DICOM and MLLP listeners and its outgoing connections (I/O).

One profile everywhere, BCP 195 as DICOM PS3.15 B.9 adopts it (RFC 9325): TLS 1.2 or later
only, forward-secret AEAD cipher suites only (ECDHE/DHE with AES-GCM or ChaCha20-Poly1305;
TLS 1.3's own suites), no compression, no renegotiation. Peers are verified against the
configured CA file: a listener asks for a client certificate (and, with
``require_client_cert``, refuses a connection without a trusted one); a client always
verifies the server's certificate and host name.

A listener never does the handshake in its accept loop (pynetdicom's ``AssociationServer``
does: one silent client would hold every other connection back). :func:`accept_tls` runs in
the connection's own thread, held to a deadline by the clock and not by a socket timeout (a
timeout restarts with each byte, so a peer dripping bytes would never reach it). It first
looks at the first byte without reading it: anything other than a TLS handshake record is
refused as plaintext at once, never answered in plaintext.

Every failure comes out as :class:`TlsRefused` with the reason in plain words, for the one log
line and the one record the listener writes.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from integrations.settings import ClientTlsSettings, ListenerTlsSettings

# RFC 9325 4.2 / PS3.15 B.9: TLS 1.2 suites with forward secrecy and authenticated encryption.
BCP195_TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"
)
TLS_HANDSHAKE_RECORD = 0x16  # the first byte of every TLS ClientHello (RFC 8446 5.1)
A_ASSOCIATE_RQ_PDU = 0x01
MLLP_START_BLOCK = 0x0B


class TlsRefused(Exception):
    """A connection the listener refuses (or a handshake the client could not complete)."""

    def __init__(self, reason: str, *, peer_closed: bool = False, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # The peer went away before sending anything: as on the plain port, not recorded.
        self.peer_closed = peer_closed
        # No (whole) handshake by the deadline: the listener's negotiation timeout, as for a
        # plain connection that never negotiates, rather than a TLS failure.
        self.timed_out = timed_out


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: our certificate chain and key (optional for a client), the trusted CAs."""

    cert: str = ""
    key: str = ""
    ca: str = ""


def _bcp195(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def server_context(files: TlsFiles, *, require_client_cert: bool) -> ssl.SSLContext:
    """The listener's context: our certificate; clients verified against ``files.ca``."""
    context = _bcp195(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(files.cert, files.key)
    if files.ca:
        context.load_verify_locations(cafile=files.ca)
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """A client's context: the server verified against ``files.ca`` (empty: the system CAs)
    and its host name checked; our certificate when given (for servers that require one)."""
    context = _bcp195(ssl.create_default_context(cafile=files.ca or None))
    if files.cert:
        context.load_cert_chain(files.cert, files.key)
    return context


def accept_tls(
    sock: socket.socket,
    context: ssl.SSLContext,
    deadline: float,
    *,
    within: str,
    wrapped: Callable[[ssl.SSLSocket], None] | None = None,
) -> ssl.SSLSocket:
    """The server side of the handshake on an accepted socket, finished by ``deadline``
    (``time.monotonic()``; ``within`` names that limit in the refusal, "within 5 s"); the
    returned socket is blocking with ``sock``'s timeout. ``wrapped`` is told the TLS socket
    as soon as it replaces ``sock`` (which is then detached), so another thread can shut it.

    Raises :class:`TlsRefused` for plaintext, an old protocol version, an untrusted or
    missing certificate, a handshake that did not finish in time, or a peer that left."""
    timeout = sock.gettimeout()
    _wait_readable(sock, deadline, f"sent nothing {within}")
    try:
        first = sock.recv(1, socket.MSG_PEEK)
    except OSError as error:
        raise TlsRefused("closed before the TLS handshake", peer_closed=True) from error
    if not first:
        raise TlsRefused("closed before the TLS handshake", peer_closed=True)
    if first[0] != TLS_HANDSHAKE_RECORD:
        raise TlsRefused(_plaintext_words(first[0]))
    tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    if wrapped is not None:
        wrapped(tls)
    try:
        tls.setblocking(False)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                _wait_readable(tls, deadline, f"no TLS handshake {within}")
            except ssl.SSLWantWriteError:
                _wait(tls, deadline, f"no TLS handshake {within}", write=True)
        tls.settimeout(timeout)
    except TlsRefused:
        _close_quietly(tls)
        raise
    except (ssl.SSLError, OSError) as error:
        _close_quietly(tls)
        raise TlsRefused(handshake_failure_words(error)) from None
    return tls


def handshake_failure_words(error: BaseException) -> str:
    """Why a TLS handshake failed, in an operator's words (either side's view)."""
    reason = str(getattr(error, "reason", "") or "").upper()
    text = str(error)
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = getattr(error, "verify_message", "") or text
        return f"certificate not trusted ({detail})"
    words = {
        "UNSUPPORTED_PROTOCOL": "the peer offered only TLS older than 1.2 (BCP 195 needs 1.2+)",
        "TLSV1_ALERT_PROTOCOL_VERSION": "no common TLS version (TLS 1.2 or later required)",
        "WRONG_SSL_VERSION": "the peer offered only TLS older than 1.2 (BCP 195 needs 1.2+)",
        "NO_PROTOCOLS_AVAILABLE": "no common TLS version (TLS 1.2 or later required)",
        "NO_SHARED_CIPHER": "no cipher suite in common (BCP 195 AEAD suites only)",
        "SSLV3_ALERT_HANDSHAKE_FAILURE": "the peer ended the handshake (no common parameters)",
        "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no client certificate (one is required)",
        "CERTIFICATE_VERIFY_FAILED": "certificate not trusted",
        "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust our certificate (unknown CA)",
        "SSLV3_ALERT_BAD_CERTIFICATE": "the peer refused our certificate",
        "TLSV1_ALERT_DECRYPT_ERROR": "the peer refused our certificate",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the peer refused our certificate",
        "WRONG_VERSION_NUMBER": "not TLS (plaintext, or an unknown protocol)",
        "HTTP_REQUEST": "not TLS (plaintext HTTP)",
        "RECORD_LAYER_FAILURE": "not TLS (plaintext, or an unknown protocol)",
        "UNEXPECTED_EOF_WHILE_READING": "the peer closed the connection during the handshake",
    }
    for key, said in words.items():
        if key in reason or key in text.upper():
            return f"{said} [{reason or type(error).__name__}]"
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake failed ({text})"
    return f"connection lost during the TLS handshake ({getattr(error, 'strerror', None) or type(error).__name__})"


def client_handshake_failure(
    host: str, port: int, context: ssl.SSLContext, server_hostname: str, timeout: float
) -> str:
    """One more connection to name why TLS to a server fails: "connection refused", "no
    answer within N s", "TLS: <reason>", or "" when it now succeeds."""
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_hostname),
        ):
            return ""
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except socket.gaierror as error:
        return f"host name not resolved ({error.strerror})"
    except (ssl.SSLError, OSError) as error:
        return f"TLS: {handshake_failure_words(error)}"


def _plaintext_words(first: int) -> str:
    what = {
        A_ASSOCIATE_RQ_PDU: "a plaintext DICOM A-ASSOCIATE-RQ",
        MLLP_START_BLOCK: "a plaintext MLLP frame",
    }.get(first, f"plaintext (first byte 0x{first:02X}, not a TLS handshake)")
    return f"{what} sent to the TLS port (not answered)"


def _wait_readable(sock: socket.socket, deadline: float, what: str) -> None:
    _wait(sock, deadline, what, write=False)


def _wait(sock: socket.socket, deadline: float, what: str, *, write: bool) -> None:
    remaining = deadline - time.monotonic()
    if isinstance(sock, ssl.SSLSocket) and not write and sock.pending():
        return
    if remaining > 0:
        try:
            readable, writable, _ = select.select(
                [] if write else [sock], [sock] if write else [], [], remaining
            )
        except (OSError, ValueError) as error:
            raise TlsRefused("closed during the TLS handshake", peer_closed=True) from error
        if readable or writable:
            return
    raise TlsRefused(what, timed_out=True)


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def shut_socket(sock: socket.socket) -> None:
    """Shut a socket down from another thread, a TLS one mid-handshake too (``SSLSocket``'s
    own ``shutdown`` would first drop the TLS state the other thread is using)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def listener_context(section: ListenerTlsSettings) -> ssl.SSLContext | None:
    """The server context for a listener's ``tls_port`` (None when it has none)."""
    if not section.tls_port:
        return None
    return server_context(
        TlsFiles(section.tls_cert, section.tls_key, section.tls_ca),
        require_client_cert=section.require_client_cert,
    )


def peer_context(section: ClientTlsSettings) -> tuple[ssl.SSLContext, str] | None:
    """(client context, name to check the certificate against) for a peer with ``tls``."""
    if not section.tls:
        return None
    context = client_context(TlsFiles(section.tls_cert, section.tls_key, section.tls_ca))
    return context, section.tls_server_name or str(getattr(section, "host", ""))
