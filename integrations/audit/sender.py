"""``audit-sender``: the audit outbox drained to the syslog collector (I/O).

The loop is the EMR outboxes' (:class:`integrations.emr.sender.QueueSender`: lease, backoff
with jitter, one ordered queue); a record leaves the queue once its frame was written to the
collector's connection. A collector that is down (refused, reset, closed) leaves the record
pending and every later one behind it, so nothing is lost and the order is kept.

Transports: ``tcp`` (RFC 6587 octet counting), ``tls`` (RFC 5425: the same framing in TLS
1.2+, the collector's certificate verified, pacsflow's client certificate when configured)
and ``udp`` (RFC 5426: one datagram per message, no acknowledgement of any kind).
Syslog has no application-level acknowledgement: before each frame on a kept connection
the sender checks that the collector has not closed it, so a collector restart costs no
record; a collector host that vanishes without closing can lose what the kernel accepted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import ssl
from datetime import datetime

from integrations.audit.syslog import format_message, octet_counted
from integrations.db.audit import AuditDelivery, AuditOutbox, AuditStore
from integrations.db.connection import Database
from integrations.emr.sender import QueueSender
from integrations.retry import RetryPolicy
from integrations.settings import AuditSettings, Settings

log = logging.getLogger(__name__)


class SyslogTransport:
    """One connection to the collector, opened on demand and reopened after any failure."""

    def __init__(self, audit: AuditSettings) -> None:
        self.audit = audit
        self._socket: socket.socket | None = None

    @property
    def destination(self) -> str:
        return f"syslog+{self.audit.syslog_transport}://{self.audit.syslog_host}:{self.audit.syslog_port}"

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.audit.tls_ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.audit.tls_cert_file:
            context.load_cert_chain(self.audit.tls_cert_file, self.audit.tls_key_file)
        return context

    def _connect(self) -> socket.socket:
        audit = self.audit
        if audit.syslog_transport == "udp":
            family = socket.getaddrinfo(
                audit.syslog_host, audit.syslog_port, type=socket.SOCK_DGRAM
            )
            udp = socket.socket(family[0][0], socket.SOCK_DGRAM)
            udp.connect(family[0][4])
            return udp
        raw = socket.create_connection(
            (audit.syslog_host, audit.syslog_port), timeout=audit.connect_timeout_seconds
        )
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if audit.syslog_transport == "tls":
            try:
                return self._tls_context().wrap_socket(
                    raw, server_hostname=audit.tls_server_name or audit.syslog_host
                )
            except BaseException:
                raw.close()
                raise
        return raw

    def _still_open(self, sock: socket.socket) -> bool:
        """False when the collector closed (or reset) the connection since the last frame."""
        if self.audit.syslog_transport == "udp":
            return True
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return True
        try:  # a collector sends nothing: readable means closed, reset, or TLS close_notify
            sock.setblocking(False)
            return bool(sock.recv(1))
        except (ssl.SSLWantReadError, BlockingIOError):
            return True
        except (OSError, ssl.SSLError):
            return False
        finally:
            sock.setblocking(True)

    def send(self, message: bytes) -> None:
        """Write one syslog message; raises OSError when it could not be handed over."""
        if self._socket is not None and not self._still_open(self._socket):
            self.close()
        if self._socket is None:
            self._socket = self._connect()
        sock = self._socket
        try:
            if self.audit.syslog_transport == "udp":
                sock.send(message)
            else:
                sock.settimeout(self.audit.connect_timeout_seconds)
                sock.sendall(octet_counted(message))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None


class AuditSender(QueueSender):
    name = "audit"
    outbox: AuditOutbox

    def __init__(
        self, database: Database, settings: Settings, transport: SyslogTransport | None = None
    ) -> None:
        audit = settings.audit
        super().__init__(
            database,
            AuditOutbox(database),
            lease_seconds=2 * audit.connect_timeout_seconds + 30.0,
            poll_seconds=audit.poll_seconds,
        )
        self.audit = audit
        self.schedule = RetryPolicy(audit.retry_delays_seconds, audit.retry_jitter)
        self.records = AuditStore(database)
        self.transport = transport or SyslogTransport(audit)
        self.hostname = socket.gethostname()

    def frame(self, xml: str, event_time: datetime, outcome: int) -> bytes:
        return format_message(
            xml,
            timestamp=event_time,
            hostname=self.hostname,
            app_name=self.audit.app_name,
            procid=str(os.getpid()),
            msgid=self.audit.msgid,
            failure=outcome != 0,
        )

    def process(self, item: AuditDelivery) -> None:
        found = self.records.message(item.audit_record_id)
        if found is None:  # cannot happen while the trigger keeps records; say so if it does
            self._persist(lambda: self.outbox.mark_failed(item.id, "audit record missing"))
            log.error("audit %s: record missing", item.key)
            self.gave_up(item, "audit record missing")  # a metric; never audited (it would loop)
            return
        xml, event_time, outcome = found
        try:
            self.transport.send(self.frame(xml, event_time, outcome))
        except (OSError, ssl.SSLError) as error:
            detail = f"{self.transport.destination}: {type(error).__name__}: {error}"
            delay = self.schedule.delay(item.attempts)
            self._persist(lambda: self.outbox.schedule_retry(item.id, delay, detail))
            log.warning(
                "audit %s attempt %d: %s; next try in %.1f s",
                item.key,
                item.attempts,
                detail,
                delay,
            )
            return
        self._persist(lambda: self.outbox.mark_sent(item.id))
        log.debug("audit %s sent (attempt %d)", item.key, item.attempts)

    def close(self) -> None:
        self.transport.close()
        super().close()
