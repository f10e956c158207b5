"""An event-driven acceptor loop for pynetdicom associations (I/O).

pynetdicom's acceptor polls: its association loop sleeps 1 ms before every look at the DIMSE
queue, and its DUL loop sleeps 1 ms whenever it found nothing to do. One C-STORE crosses
both loops several times, so a single association tops out near 300 instances/s on these
machines whatever the handler does. Here the association loop blocks on the DIMSE queue
itself (woken the moment a message is decoded) and the DUL idle sleep is 0.2 ms; measured in
``bench/ingest.py``: about 1.7x more instances/s on one association, no more CPU per instance.

This reaches into two pynetdicom internals (``Association._run_reactor`` and
``DULServiceProvider._run_loop_delay``) through the server's public ``request_handler``
extension point. It is used only with the pynetdicom releases it was written against
(:data:`SUPPORTED_VERSIONS`); with any other release the stock loop runs unchanged.
"""

from __future__ import annotations

import logging
import queue
import ssl
import struct
import threading
import types
from collections.abc import Callable
from typing import Any

import pynetdicom
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.fsm import TRANSITION_TABLE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import RequestHandler

from integrations.dicom.guard import (
    ConnectionGuard,
    GuardedConnection,
    admit_connection,
    guard_association,
)

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = ("3.0.",)
DUL_IDLE_SLEEP_SECONDS = 0.0002
DIMSE_WAIT_SECONDS = 0.002
TLS_HANDSHAKE_THREAD_PREFIX = "DicomTlsHandshake@"  # not counted as an association


def event_driven_supported() -> bool:
    return pynetdicom.__version__.startswith(SUPPORTED_VERSIONS)


def _run_reactor(self: Any) -> None:
    """Same duties as pynetdicom's loop, in the same order, waiting on the queue not a sleep."""
    self._is_paused = False
    while not self._kill:
        # Respect pauses requested by send_*() on the acceptor side (pynetdicom's checkpoint).
        self._is_paused = True
        self._reactor_checkpoint.wait()
        self._is_paused = False

        try:
            context_id, message = self.dimse.msg_queue.get(timeout=DIMSE_WAIT_SECONDS)
        except queue.Empty:
            message = None
        if message:
            self._serve_request(message, context_id)

        if self.is_established and self.acse.is_release_requested():
            if not self.dimse.msg_queue.empty():
                # An A-RELEASE-RQ sent right behind the last P-DATA: the DUL queued that
                # message before it saw the release (the queue wait can time out just before
                # the put). Serve it first: its C-STORE-RSP goes before the A-RELEASE-RP.
                continue
            self.acse.send_release(is_response=True)
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return

        if self.acse.is_aborted():
            self.dul.receive_pdu(wait=False)  # lets EVT_ACSE_RECV fire, as pynetdicom does
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return

        if not self.dul.is_alive():
            self.kill()
            return

        if self.dul.idle_timer_expired():
            log.error("network timeout reached; aborting the association")
            self.abort()
            self.kill()
            return


# Local service primitives (PS3.8 9.2): requests and responses from the node itself.
LOCAL_PRIMITIVE_EVENTS = frozenset({"Evt1", "Evt7", "Evt8", "Evt9", "Evt11", "Evt14", "Evt15"})


def _dropping_late_primitives(machine: Any) -> Any:
    """``StateMachine.do_action`` that drops a local primitive the state no longer takes.

    A peer's invalid PDU can abort the association (Sta13) just after the node queued its
    answer to that peer's A-RELEASE-RQ; pynetdicom then raises InvalidEventError out of the
    DUL thread, which dies with a traceback (found by tests/faults/test_fuzz_network.py).
    There is nobody left to answer, so the primitive is dropped."""
    do_action = machine.do_action

    def dropping(event: str) -> None:
        if event in LOCAL_PRIMITIVE_EVENTS and (event, machine.current_state) not in (
            TRANSITION_TABLE
        ):
            log.debug("dropped %s in %s: the association has ended", event, machine.current_state)
            return
        do_action(event)

    return dropping


# C-STORE-RSP command set (PS3.7 9.3.1.2), Implicit VR Little Endian: element headers.
_COMMAND_FIELD_STORE_RSP = 0x8001
_NO_DATA_SET = 0x0101
_LAST_COMMAND_FRAGMENT = b"\x03"  # message control header: command, last fragment


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _uid(value: object) -> bytes:
    encoded = str(value).encode("ascii")
    return encoded + b"\x00" if len(encoded) % 2 else encoded


def encode_store_response(primitive: Any) -> bytes | None:
    """The command set pynetdicom would encode for a C-STORE response with no Error Comment
    and no Offending Element (the node's success answers), or None for any other primitive.

    pynetdicom builds a pydicom Dataset for each response and encodes it twice (once for the
    Command Group Length): about a third of a millisecond per instance on these machines,
    for seven elements. tests/unit/dicom/test_reactor.py checks the bytes against
    pynetdicom's own encoding."""
    if (
        type(primitive) is not C_STORE
        or primitive.MessageIDBeingRespondedTo is None
        or primitive.Status is None
        or primitive.ErrorComment is not None
        or primitive.OffendingElement is not None
        or primitive.AffectedSOPClassUID is None
        or primitive.AffectedSOPInstanceUID is None
    ):
        return None
    body = b"".join(
        (
            _element(0x0002, _uid(primitive.AffectedSOPClassUID)),
            _element(0x0100, struct.pack("<H", _COMMAND_FIELD_STORE_RSP)),
            _element(0x0120, struct.pack("<H", primitive.MessageIDBeingRespondedTo)),
            _element(0x0800, struct.pack("<H", _NO_DATA_SET)),
            _element(0x0900, struct.pack("<H", primitive.Status)),
            _element(0x1000, _uid(primitive.AffectedSOPInstanceUID)),
        )
    )
    return _element(0x0000, struct.pack("<I", len(body))) + body


def _encoding_store_responses(assoc: Any) -> Callable[[Any, int], None]:
    """``DIMSEServiceProvider.send_msg`` that sends a plain C-STORE response from
    :func:`encode_store_response` as one P-DATA, when it fits the peer's maximum PDU and no
    handler watches EVT_DIMSE_SENT (it is given pynetdicom's message object); everything
    else goes through pynetdicom's own path."""
    dimse = assoc.dimse
    send_msg = dimse.send_msg

    def sending(primitive: Any, context_id: int) -> None:
        encoded = encode_store_response(primitive)
        limit = dimse.maximum_pdu_size
        if (
            encoded is None
            or (limit and len(encoded) > limit - 6)  # pynetdicom would fragment it
            or assoc.get_handlers(evt.EVT_DIMSE_SENT)
        ):
            send_msg(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, _LAST_COMMAND_FRAGMENT + encoded))
        dimse.dul.send_pdu(pdata)

    return sending


class EventDrivenRequestHandler(RequestHandler):
    """Creates each acceptor association with the event-driven loop."""

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        assoc._run_reactor = types.MethodType(_run_reactor, assoc)  # type: ignore[method-assign]
        assoc.dul._run_loop_delay = DUL_IDLE_SLEEP_SECONDS
        machine = assoc.dul.state_machine
        machine.do_action = _dropping_late_primitives(machine)  # type: ignore[method-assign]
        assoc.dimse.send_msg = _encoding_store_responses(assoc)  # type: ignore[method-assign,assignment]
        return assoc


def _guarded(
    base: type[RequestHandler], guard: ConnectionGuard, tls: ssl.SSLContext | None
) -> type[RequestHandler]:
    """``base`` with every connection admitted by ``guard`` before its association starts,
    and, with ``tls``, its TLS handshake done in a thread of its own. pynetdicom's server
    calls ``handle`` in its accept loop (and would do the handshake there itself, in
    ``get_request``): one silent client would stall every other connection."""

    def handle(self: RequestHandler) -> None:
        connection = admit_connection(guard, self.client_address, self.request)
        if connection is None:
            self.server.shutdown_request(self.request)
            return
        if tls is None:
            start(self, connection)
            return
        threading.Thread(
            target=secure_then_start,
            args=(self, connection, tls),
            name=f"{TLS_HANDSHAKE_THREAD_PREFIX}{connection.host}",
            daemon=True,
        ).start()

    def secure_then_start(
        self: RequestHandler, connection: GuardedConnection, context: ssl.SSLContext
    ) -> None:
        raw = self.request
        secured = connection.start_tls(context)
        if secured is None:
            self.server.shutdown_request(raw)
            return
        self.request = secured
        try:
            start(self, connection)
        except Exception:
            log.exception("could not start the association from %s", connection.host)
            connection.guard.limiter.release(connection.slot)
            self.server.shutdown_request(secured)

    def start(self: RequestHandler, connection: GuardedConnection) -> None:
        assoc = self._create_association()
        guard_association(guard, assoc, connection)
        evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
        assoc.start()

    return type(f"Guarded{base.__name__}", (base,), {"handle": handle})


def request_handler(
    guard: ConnectionGuard | None = None, tls: ssl.SSLContext | None = None
) -> type[RequestHandler]:
    """The handler class to give the server: event-driven when this pynetdicom is supported,
    and guarded (bounded PDUs, negotiation deadline, per-source limits) when given a guard.
    The guard's PDU reader is a copy of this pynetdicom's, so it is used on the supported
    releases only, like the event-driven loop. ``tls`` (with a guard only) secures every
    connection, each handshake in its own thread within the negotiation deadline."""
    if tls is not None and (guard is None or not event_driven_supported()):
        raise RuntimeError(
            f"DICOM TLS needs the connection guard, written for pynetdicom {SUPPORTED_VERSIONS}"
        )
    if event_driven_supported():
        return (
            EventDrivenRequestHandler
            if guard is None
            else _guarded(EventDrivenRequestHandler, guard, tls)
        )
    log.warning(
        "pynetdicom %s is not one the event-driven acceptor loop and the connection guard were "
        "written for; using the stock loop, unguarded",
        pynetdicom.__version__,
    )
    return RequestHandler
