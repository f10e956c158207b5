"""MLLP over TCP: a client (one message, then its ACK) and a threaded server (I/O).

The server hands each received message to a handler and sends back what it returns. It holds
at most ``max_connections`` connections, ``max_connections_per_source`` from one address; a
connection that has not sent a whole first message within ``first_frame_timeout`` is closed,
and when the server or a source is full a newcomer takes the place of the oldest such
connection (see :mod:`integrations.connection_limits`), so idle sockets never lock out the
ADT feed.

Why the framing stays ours rather than ``hl7apy.mllp.MLLPServer``: hl7apy's server would
keep the ACK-after-commit rule (its handler's ``reply()`` runs synchronously before the answer
is written), but it decodes the frame with one fixed character set before we can read MSH-18,
reads the stream one byte at a time, dispatches on MSH-9 to a handler per message type, answers unknown types itself, and has none
of the connection limits, first-frame deadline, eviction of idle sockets, message size cap
or TLS below; wrapping it would take more code than this module and ``framing`` together.

All protocol work is elsewhere: framing in :mod:`integrations.hl7.framing`, building and
reading messages in the pure HL7 modules. This module only moves bytes and turns socket
failures into :class:`PeerUnavailableError` (transient: connection refused, reset, timeout).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable

from integrations.connection_limits import ConnectionLimiter, Slot
from integrations.errors import PeerUnavailableError
from integrations.hl7.framing import FrameDecoder, FramingError, frame
from integrations.metrics import HL7_CONNECTIONS_REFUSED
from integrations.tls import TlsRefused, accept_tls, handshake_failure_words, shut_socket

log = logging.getLogger(__name__)

RECEIVE_CHUNK = 65536


class MllpClient:
    """One persistent connection to an MLLP receiver, reopened after any failure.

    Original-mode HL7 is strictly one message then its ACK, so a client is used by one
    thread at a time.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 10.0,
        ack_timeout: float = 30.0,
        max_ack_bytes: int = 1024 * 1024,
        tls: tuple[ssl.SSLContext, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        # (client context, name the receiver's certificate must carry): MLLP over TLS only.
        self.tls = tls
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self.max_ack_bytes = max_ack_bytes
        self._socket: socket.socket | None = None
        # Whether the last send() got the message out (False: never connected or sent).
        self.last_send_reached_peer = False

    @property
    def peer(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self) -> None:
        """Open the connection now (it is kept for the next :meth:`send`)."""
        self._connect()

    def _connect(self) -> socket.socket:
        if self._socket is None:
            try:
                sock = socket.create_connection(
                    (self.host, self.port), timeout=self.connect_timeout
                )
            except OSError as error:
                raise PeerUnavailableError(
                    f"cannot connect to MLLP peer {self.peer}: {error}", peer=self.peer
                ) from None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self._secure(sock, *self.tls)
            self._socket = sock
        return self._socket

    def _secure(
        self, sock: socket.socket, context: ssl.SSLContext, server_name: str
    ) -> ssl.SSLSocket:
        try:
            return context.wrap_socket(sock, server_hostname=server_name)
        except (ssl.SSLError, OSError) as error:
            sock.close()
            raise PeerUnavailableError(
                f"TLS to MLLP peer {self.peer} failed: {handshake_failure_words(error)}",
                peer=self.peer,
            ) from None

    def send(self, message: bytes) -> bytes:
        """Send one message and return the raw ACK message (without MLLP framing).

        On a timeout or any socket error the connection is closed, so a late ACK can never
        be taken for the answer to the next message.
        """
        self.last_send_reached_peer = False
        sock = self._connect()
        decoder = FrameDecoder(self.max_ack_bytes)
        try:
            sock.settimeout(self.ack_timeout)
            sock.sendall(frame(message))
            self.last_send_reached_peer = True
            while True:
                data = sock.recv(RECEIVE_CHUNK)
                if not data:
                    raise PeerUnavailableError(
                        f"MLLP peer {self.peer} closed the connection without an ACK",
                        peer=self.peer,
                    )
                answers = decoder.feed(data)
                if answers:
                    return answers[0]
        except TimeoutError:
            self.close()
            raise PeerUnavailableError(
                f"no ACK from MLLP peer {self.peer} within {self.ack_timeout:g} s", peer=self.peer
            ) from None
        except (OSError, FramingError) as error:
            self.close()
            raise PeerUnavailableError(
                f"MLLP exchange with {self.peer} failed: {error}", peer=self.peer
            ) from None
        except PeerUnavailableError:
            self.close()
            raise

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            finally:
                self._socket = None


# handler(message bytes, peer "host:port") -> ACK bytes to send back, or None for no answer
MessageHandler = Callable[[bytes, str], bytes | None]
# on_refused(kind, detail, peer host): records a refused connection; must not raise
RefusalRecorder = Callable[[str, str, str], None]


class _Connection(socketserver.BaseRequestHandler):
    server: _ThreadingServer

    def handle(self) -> None:
        server = self.server
        sock: socket.socket = self.request
        host = str(self.client_address[0])
        peer = "{}:{}".format(*self.client_address[:2])

        current = [sock]  # the TLS socket once the handshake has wrapped it

        def close() -> None:
            server.refused(
                slot, "evicted", host, "closed: no message yet, its place went to a newer one"
            )
            shut_socket(current[0])

        admission = server.limiter.admit(host, close)
        if admission.evicted is not None:
            admission.evicted.close()
        if admission.slot is None:
            server.refused(None, "connection_limit", host, f"refused: {admission.reason}")
            return
        slot = admission.slot
        # Until a whole first message has arrived the connection has a short deadline (idle
        # sockets must not hold places for the idle timeout), the TLS handshake included.
        deadline = time.monotonic() + server.first_frame_timeout
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if server.tls is not None:
            try:
                sock = accept_tls(
                    sock,
                    server.tls,
                    deadline,
                    within=f"within {server.first_frame_timeout:g} s",
                    wrapped=lambda tls: current.__setitem__(0, tls),
                )
            except TlsRefused as refusal:
                server.limiter.release(slot)
                if refusal.timed_out:
                    log.warning("closing MLLP connection from %s: %s", peer, refusal.reason)
                elif not refusal.peer_closed and slot.end(refusal.reason):
                    server.refused_tls(host, refusal.reason)
                return
        with server.lock:
            server.connections.add(sock)
        try:
            decoder = FrameDecoder(server.max_message_bytes)
            while not server.stopping.is_set():
                if not slot.proven:
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                try:
                    data = sock.recv(RECEIVE_CHUNK)
                except TimeoutError:
                    if slot.proven:
                        log.info("closing idle MLLP connection from %s", peer)
                    else:
                        server.refused(
                            slot,
                            "no_first_message",
                            host,
                            f"closed: no whole message within {server.first_frame_timeout:g} s",
                        )
                    return
                except OSError:
                    return
                if not data:
                    return
                try:
                    messages = decoder.feed(data)
                except FramingError as error:
                    server.refused(slot, "framing_error", host, f"closed: {error}")
                    return
                if messages and not slot.proven:
                    server.limiter.prove(slot)
                    sock.settimeout(server.idle_timeout)
                for message in messages:
                    answer = server.handler(message, peer)
                    if answer is not None:
                        sock.sendall(frame(answer))
        finally:
            with server.lock:
                server.connections.discard(sock)
            server.limiter.release(slot)
            if sock is not self.request:  # the TLS socket (socketserver closes the request)
                with contextlib.suppress(OSError):
                    sock.close()


class _ThreadingServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: MessageHandler,
        *,
        max_connections: int,
        max_connections_per_source: int,
        idle_timeout: float,
        first_frame_timeout: float,
        max_message_bytes: int,
        tls: ssl.SSLContext | None,
        on_refused: RefusalRecorder | None,
    ) -> None:
        self.handler = handler
        self.tls = tls
        self.on_refused = on_refused
        self.tls_refused = 0  # connections refused on TLS grounds (the listener's metric)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.first_frame_timeout = first_frame_timeout
        self.max_message_bytes = max_message_bytes
        self.limiter = ConnectionLimiter(
            per_source=max_connections_per_source,
            max_unproven=max_connections,
            max_total=max_connections,
        )
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        super().__init__(address, _Connection)

    def refused(self, slot: Slot | None, label: str, host: str, detail: str) -> None:
        """A connection refused or closed before or instead of its messages (limits,
        eviction, first-message deadline, framing): one log line, one count, one record,
        once per connection (``slot`` None: it never had a place)."""
        if slot is not None and not slot.end(label):
            return
        log.warning("MLLP connection from %s %s", host, detail)
        HL7_CONNECTIONS_REFUSED.labels(label).inc()
        if self.on_refused is not None:
            try:
                self.on_refused("connection_refused", detail, host)
            except Exception:
                log.exception("could not record the refused MLLP connection")

    def refused_tls(self, host: str, reason: str) -> None:
        """One log line, one count and one record per connection refused on TLS grounds."""
        log.warning("MLLP connection from %s refused on the TLS port: %s", host, reason)
        with self.lock:
            self.tls_refused += 1
        HL7_CONNECTIONS_REFUSED.labels("tls").inc()
        if self.on_refused is not None:
            try:
                self.on_refused("tls_refused", f"refused on the TLS port: {reason}", host)
            except Exception:
                log.exception("could not record the refused MLLP connection")

    def close_connections(self) -> None:
        with self.lock:
            for sock in list(self.connections):
                shut_socket(sock)


class MllpServer:
    """A threaded MLLP listener; ``handler`` is called once per received message.

    With ``tls`` every connection is TLS (BCP 195, :mod:`integrations.tls`): the handshake
    runs in the connection's thread within ``first_frame_timeout``, and a refused one (old
    TLS, untrusted certificate, plaintext) is logged, counted (``tls_refused``) and passed
    to ``on_refused(kind, detail, host)`` once.
    """

    def __init__(
        self,
        host: str,
        port: int,
        handler: MessageHandler,
        *,
        max_connections: int = 32,
        max_connections_per_source: int = 8,
        idle_timeout: float = 600.0,
        first_frame_timeout: float = 5.0,
        max_message_bytes: int = 1024 * 1024,
        tls: ssl.SSLContext | None = None,
        on_refused: RefusalRecorder | None = None,
    ) -> None:
        self._server = _ThreadingServer(
            (host, port),
            handler,
            max_connections=max_connections,
            max_connections_per_source=max_connections_per_source,
            idle_timeout=idle_timeout,
            first_frame_timeout=first_frame_timeout,
            max_message_bytes=max_message_bytes,
            tls=tls,
            on_refused=on_refused,
        )
        self._thread: threading.Thread | None = None

    @property
    def tls_refused(self) -> int:
        return self._server.tls_refused

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            daemon=True,
            name="mllp-server",
        )
        self._thread.start()

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        if self._thread is not None:
            self._thread.join(5)
