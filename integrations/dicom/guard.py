"""What the node lets in before association negotiation, and how big a PDU may be (I/O).

pynetdicom reads a PDU by trusting its length field: ``DULServiceProvider._read_pdu_data``
calls ``recv(pdu_length)``, which keeps appending to one bytearray until the declared length
(up to 4 GiB) has arrived, from any TCP client and before any AE title is looked at. And an
acceptor thread counts against ``AE.maximum_associations`` from the moment the TCP connection
opens, so idle sockets lock real senders out ("Local Limit Exceeded") for the whole ACSE
timeout, even after the peer has gone.

The node's request handler therefore gives every connection three things, here:

* a place in a :class:`~integrations.connection_limits.ConnectionLimiter` (per source
  address, and a bounded pool of connections still negotiating, the oldest of which gives way
  to a newcomer);
* a thread name pynetdicom does not count as an association (``DicomConnection@``) until a
  whole, bounded A-ASSOCIATE-RQ has arrived, and a short negotiation deadline until then;
* a PDU reader (a copy of pynetdicom 3.0's ``_read_pdu_data``, see
  :data:`integrations.dicom.reactor.SUPPORTED_VERSIONS`) that looks at the 6-byte header
  first: an A-ASSOCIATE-RQ over :data:`MAX_ASSOCIATE_RQ_BYTES`, a P-DATA-TF longer than the
  maximum length the node advertised, or any other PDU over the A-ASSOCIATE bound is answered
  with an A-ABORT and the connection closed, without reading its body.

Every connection the node refuses or ends this way is logged (WARNING) and recorded once as a
node event with the peer's address.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import time
import types
from collections.abc import Callable
from typing import Any

from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dimse_primitives import C_STORE

from integrations.connection_limits import ConnectionLimiter, Slot
from integrations.dicom import status
from integrations.tls import TlsRefused, accept_tls, shut_socket

log = logging.getLogger(__name__)

MAX_ASSOCIATE_RQ_BYTES = 64 * 1024
PDU_HEADER_BYTES = 6
A_ASSOCIATE_RQ = 0x01
P_DATA_TF = 0x04
KNOWN_PDU_TYPES = frozenset(range(0x01, 0x08))
# A-ABORT, source: DICOM UL service-provider (2), reason: invalid-PDU-parameter value (6).
A_ABORT_INVALID_PARAMETER = struct.pack(">BBLBBBB", 0x07, 0x00, 4, 0, 0, 0x02, 0x06)
AFFECTED_SOP_INSTANCE_UID_TAG = 0x00001000
PENDING_THREAD_PREFIX = "DicomConnection@"
COUNTED_THREAD_PREFIX = "AcceptorThread@"  # what pynetdicom's active_associations looks for

# record(kind, detail, peer_host, **more node_events columns) -> None; must not raise
Recorder = Callable[..., None]


class ConnectionGuard:
    """Shared by every connection of one node listener."""

    def __init__(
        self,
        *,
        per_source: int,
        max_unproven: int,
        negotiation_timeout: float,
        max_pdu_length: int,
        record: Recorder,
    ) -> None:
        self.limiter = ConnectionLimiter(per_source=per_source, max_unproven=max_unproven)
        self.negotiation_timeout = negotiation_timeout
        # 0 advertises "no limit" (PS3.8 D.1); the node's own setting still bounds what it buffers.
        self.max_pdu_length = max_pdu_length or MAX_ASSOCIATE_RQ_BYTES
        self.record = record
        self.stopping = False

    def refuse(self, kind: str, detail: str, host: str) -> None:
        log.warning("DICOM connection from %s %s", host, detail)
        self.record(kind, detail, host)

    def close_unproven(self) -> None:
        """At shutdown: pynetdicom only stops the associations it counts. Not recorded: the
        node ended them, the peers did nothing wrong."""
        self.stopping = True
        for slot in self.limiter.unproven():
            slot.close()


class GuardedConnection:
    """One TCP connection's place and deadline; attached to its association and DUL once
    it has one (on the TLS port, after the handshake)."""

    def __init__(self, guard: ConnectionGuard, slot: Slot, raw: socket.socket) -> None:
        self.guard = guard
        self.assoc: Any = None
        self.slot = slot
        self.raw = raw
        self.host = slot.host
        self.deadline = time.monotonic() + guard.negotiation_timeout
        self.network_timeout = raw.gettimeout()
        self.acse_timeout: float | None = None
        self.peer_closed = False

    def start_tls(self, context: ssl.SSLContext) -> ssl.SSLSocket | None:
        """The TLS handshake, in this connection's thread and within its negotiation
        deadline; the TLS socket, or None when refused (logged and recorded once, unless
        the peer just left or the node already ended the connection)."""
        try:
            self.raw = accept_tls(
                self.raw,
                context,
                self.deadline,
                within=f"within {self.guard.negotiation_timeout:g} s",
                wrapped=self._wrapped,
            )
        except TlsRefused as refusal:
            if refusal.peer_closed or not self.slot.end(refusal.reason):
                pass  # the peer left, or the node already ended (and recorded) it
            elif refusal.timed_out:
                self.guard.refuse(
                    "connection_refused", f"closed on the TLS port: {refusal.reason}", self.host
                )
            else:
                self.guard.refuse(
                    "tls_refused", f"refused on the TLS port: {refusal.reason}", self.host
                )
            self.guard.limiter.release(self.slot)
            return None
        return self.raw

    def limit_for(self, pdu_type: int) -> int:
        if pdu_type == P_DATA_TF and self.slot.proven:
            return self.guard.max_pdu_length
        return MAX_ASSOCIATE_RQ_BYTES

    def _wrapped(self, tls: ssl.SSLSocket) -> None:
        self.raw = tls

    def prove(self) -> None:
        """A whole A-ASSOCIATE-RQ arrived: from now on it is an association like any other."""
        self.guard.limiter.prove(self.slot)
        self.assoc.name = self.assoc.name.replace(PENDING_THREAD_PREFIX, COUNTED_THREAD_PREFIX)
        self.assoc.acse_timeout = self.acse_timeout
        with contextlib.suppress(OSError):
            self.raw.settimeout(self.network_timeout)

    def end(self, reason: str, *, kind: str = "connection_refused") -> None:
        """The node ends this connection (logged and recorded the first time only)."""
        if self.slot.end(reason):
            self.guard.refuse(kind, reason, self.host)
        self.shut()

    def abort_oversized(self, pdu_type: int, length: int, limit: int) -> None:
        with contextlib.suppress(OSError):
            self.raw.sendall(A_ABORT_INVALID_PARAMETER)
        self.end(
            f"aborted: PDU type 0x{pdu_type:02X} declares {length} bytes, over the {limit}-byte "
            "limit (not read)",
            kind="pdu_refused",
        )

    def abort_undecodable(self, pdu_type: int, error: Exception) -> None:
        """A whole PDU before negotiation that pynetdicom cannot decode (found by
        tests/faults/test_fuzz_network.py)."""
        with contextlib.suppress(OSError):
            self.raw.sendall(A_ABORT_INVALID_PARAMETER)
        self.end(
            f"aborted: undecodable PDU type 0x{pdu_type:02X} before negotiation "
            f"({_printable(error)})",
            kind="pdu_refused",
        )

    def shut(self) -> None:
        shut_socket(self.raw)

    def wake_acceptor(self) -> None:
        """End the acceptor's wait for an A-ASSOCIATE-RQ now, through its own timeout path
        (``receive_pdu`` answers None), so the thread goes as soon as the connection does."""
        if not self.slot.proven and self.assoc is not None:
            self.assoc.dul.to_user_queue.put(None)

    def timed_out(self) -> None:
        self.end(f"closed: no association negotiated within {self.guard.negotiation_timeout:g} s")

    def finished(self) -> None:
        """The acceptor thread ends: record a negotiation that timed out, free the place."""
        if not self.slot.proven and not self.slot.released and not self.peer_closed:
            self.timed_out()
        self.guard.limiter.release(self.slot)


def admit_connection(
    guard: ConnectionGuard, client_address: Any, raw: socket.socket
) -> GuardedConnection | None:
    """Give a freshly accepted connection its place, or refuse it (None: the caller closes
    the socket and starts nothing)."""
    host = str(client_address[0])
    holder: dict[str, GuardedConnection] = {}

    def close() -> None:
        connection = holder.get("connection")
        if connection is None:
            return
        if guard.stopping:
            connection.slot.end("node stopping")
            connection.shut()
        else:
            connection.end("closed: gave its place to a newer connection (still not negotiated)")

    admission = guard.limiter.admit(host, close)
    if admission.evicted is not None:
        admission.evicted.close()
    if admission.slot is None:
        guard.refuse("connection_refused", f"refused: {admission.reason}", host)
        return None
    connection = GuardedConnection(guard, admission.slot, raw)
    holder["connection"] = connection
    return connection


def guard_association(guard: ConnectionGuard, assoc: Any, connection: GuardedConnection) -> None:
    """Attach an admitted connection to its freshly created acceptor association."""
    connection.assoc = assoc
    connection.acse_timeout = assoc.acse_timeout
    assoc.name = assoc.name.replace(COUNTED_THREAD_PREFIX, PENDING_THREAD_PREFIX)
    assoc.acse_timeout = guard.negotiation_timeout  # the ARTIM and the wait for the RQ
    assoc.dul._pacsflow_connection = connection
    assoc.dul._read_pdu_data = types.MethodType(_bounded_read_pdu_data, assoc.dul)
    assoc.dimse.receive_primitive = _refusing_unreadable_stores(assoc, connection)
    run = assoc.run

    def run_then_release() -> None:
        try:
            run()
        finally:
            connection.finished()

    assoc.run = run_then_release


def _refusing_unreadable_stores(assoc: Any, connection: GuardedConnection) -> Callable[[Any], None]:
    """``DIMSEServiceProvider.receive_primitive`` that answers a C-STORE-RQ whose command
    pynetdicom cannot turn into a primitive (a bad Affected SOP Instance UID raises in its UID
    setter) with a C-STORE failure, instead of the A-ABORT and traceback pynetdicom gives."""
    dimse = assoc.dimse
    receive = dimse.receive_primitive

    def receive_primitive(primitive: Any) -> None:
        if dimse.message is None:
            dimse.message = DIMSEMessage()
        message = dimse.message
        to_primitive = message.message_to_primitive

        def message_to_primitive() -> Any:
            try:
                return to_primitive()
            except Exception as error:
                if type(message).__name__ == "C_STORE_RQ":
                    _refuse_unreadable_store(dimse, message, connection, error)
                else:  # pynetdicom would abort too, with a traceback and no event
                    _refuse_undecodable_message(assoc, connection, error)
                return None  # the association loop skips an empty message

        message.message_to_primitive = message_to_primitive
        try:
            receive(primitive)
        except Exception as error:
            # pynetdicom decodes the command set inside a state-machine action, where an
            # exception kills the DUL thread with a traceback and leaves the peer without
            # an A-ABORT (found by tests/faults/test_fuzz_network.py): abort it here.
            dimse.message = None
            _refuse_undecodable_message(assoc, connection, error)

    return receive_primitive


def _refuse_undecodable_message(
    assoc: Any, connection: GuardedConnection, error: Exception
) -> None:
    detail = f"aborted: undecodable DIMSE message ({type(error).__name__}: {_printable(error)})"
    if connection.slot.end(detail):
        connection.guard.refuse("pdu_refused", detail, connection.host)
    assoc.dul.event_queue.put("Evt19")  # invalid PDU: A-ABORT, then the connection closes


def _refuse_unreadable_store(
    dimse: Any, message: Any, connection: GuardedConnection, error: Exception
) -> None:
    command = message.command_set
    raw_uid = str(command.get("AffectedSOPInstanceUID", "") or "")[:64]
    calling = str(getattr(dimse.assoc.requestor, "ae_title", "") or "").strip()
    reason = f"invalid Affected SOP Instance UID {raw_uid!r}"
    log.warning(
        "C-STORE from %s (%s) refused (0x%04X): %s",
        calling,
        connection.host,
        status.STORE_CANNOT_UNDERSTAND,
        reason,
    )
    connection.guard.record(
        "store_refused",
        f"0x{status.STORE_CANNOT_UNDERSTAND:04X} {reason}",
        connection.host,
        calling_ae_title=calling,
        sop_instance_uid=raw_uid,
    )
    response = C_STORE()
    response.MessageIDBeingRespondedTo = command.MessageID
    with contextlib.suppress(Exception):
        response.AffectedSOPClassUID = command.AffectedSOPClassUID
    response.Status = status.STORE_CANNOT_UNDERSTAND
    response.ErrorComment = "invalid Affected SOP Instance UID"  # type: ignore[assignment]
    response.OffendingElement = [AFFECTED_SOP_INSTANCE_UID_TAG]  # type: ignore[assignment]
    dimse.send_msg(response, message.context_id)


def _bounded_read_pdu_data(self: Any) -> None:
    """pynetdicom 3.0's ``_read_pdu_data`` with the header checked before the body is read,
    and a negotiation deadline on reads before the association is requested."""
    connection: GuardedConnection = self._pacsflow_connection
    sock = self.socket
    if not connection.slot.proven and connection.deadline <= time.monotonic():
        _close(self, connection, connection.timed_out)
        return
    header = _receive(sock, PDU_HEADER_BYTES, connection)
    if len(header) < PDU_HEADER_BYTES:
        _lost(self, connection)
        return
    pdu_type, _, pdu_length = struct.unpack(">BBL", header)
    if pdu_type not in KNOWN_PDU_TYPES:
        log.warning("unknown PDU type 0x%02X from %s", pdu_type, connection.host)
        self.event_queue.put("Evt19")  # unrecognised PDU: the state machine aborts
        return
    limit = connection.limit_for(pdu_type)
    if pdu_length > limit:
        _close(self, connection, lambda: connection.abort_oversized(pdu_type, pdu_length, limit))
        return
    if connection.slot.proven:
        pdu_bytes = _receive_whole_pdu(connection.raw, header, pdu_length)
    else:
        body = _receive(sock, pdu_length, connection)
        pdu_bytes = header + body if len(body) == pdu_length else None
    if pdu_bytes is None:
        _lost(self, connection)
        return
    try:
        pdu, event = self._decode_pdu(pdu_bytes)
    except Exception as error:
        if not connection.slot.proven:
            # Aborted here, not by the state machine: its A-ABORT leaves the acceptor waiting
            # out the ACSE timeout for a request that never comes, holding a counted place.
            reason = error
            _close(self, connection, lambda: connection.abort_undecodable(pdu_type, reason))
            return
        log.warning("undecodable PDU from %s: %s", connection.host, error)
        self.event_queue.put("Evt19")
        return
    if pdu_type == A_ASSOCIATE_RQ and not connection.slot.proven:
        connection.prove()
    self.event_queue.put(event)
    self._recv_pdu.put(pdu)


def _receive(sock: Any, length: int, connection: GuardedConnection) -> bytearray:
    """``length`` bytes, or fewer when the connection broke. Before the association is
    requested every read is held to the negotiation deadline (a socket timeout alone restarts
    with each byte, so a peer dripping bytes would never reach it)."""
    if connection.slot.proven:
        try:
            return sock.recv(length)
        except (OSError, TimeoutError):
            return bytearray()
    data = bytearray()
    while len(data) < length:
        remaining = connection.deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            connection.raw.settimeout(remaining)
            chunk = connection.raw.recv(min(length - len(data), 4096))
        except (OSError, TimeoutError):
            break
        if not chunk:
            break
        data.extend(chunk)
    return data


def _receive_whole_pdu(raw: Any, header: bytes | bytearray, length: int) -> bytearray | None:
    """Header and body in one buffer sized from the (already bounded) length, filled by
    ``recv_into`` in as few calls as the socket allows; None when the connection broke
    first. pynetdicom reads 4 KiB at a time into a growing buffer, then copies header and
    body together: for a 128 KiB P-DATA-TF that is 32 reads and two more copies."""
    buffer = bytearray(PDU_HEADER_BYTES + length)
    buffer[:PDU_HEADER_BYTES] = header
    view = memoryview(buffer)
    offset = PDU_HEADER_BYTES
    try:
        while offset < len(buffer):
            received = raw.recv_into(view[offset:])
            if not received:
                return None
            offset += received
    except (OSError, TimeoutError):
        return None
    finally:
        view.release()
    return buffer


def _lost(dul: Any, connection: GuardedConnection) -> None:
    """The connection broke or timed out mid-read (pynetdicom's Evt17 path)."""
    if not connection.slot.proven:
        if time.monotonic() >= connection.deadline:
            connection.timed_out()
        else:
            connection.peer_closed = True
        connection.wake_acceptor()
    dul.event_queue.put("Evt17")


def _close(dul: Any, connection: GuardedConnection, end: Callable[[], None]) -> None:
    """The node ends the connection: ``end`` logs, records and shuts it; closing the
    AssociationSocket raises the one Evt17 the state machine expects."""
    end()
    connection.wake_acceptor()
    dul.socket.close()


def _printable(error: Exception) -> str:
    """An error about a peer's bytes, fit for a log line and a text column: pynetdicom's
    messages quote those bytes, NUL included, which PostgreSQL refuses in text."""
    return ascii(str(error))[1:-1][:160]
