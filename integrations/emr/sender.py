"""Draining an outbox: claim, render with the current patient context, deliver, record (I/O).

One loop serves each outbox (HL7 MLLP, FHIR). It sleeps until a message is queued (LISTEN on
the outbox channel), a retry falls due, or ``poll_seconds`` pass. What happens to a claimed
message::

    document, no payload yet ──▶ render with the patient's ADT context (or none: flagged)
         │  no context and younger than context_wait_seconds ──▶ put back until then
    payload ──▶ deliver ──▶ sent     the peer accepted it: leaves the outbox
                        ├─▶ retry    after the backoff; a payload the peer never saw is
                        │            rendered again next time (a late ADT still gets in)
                        └─▶ failed   refused for good: kept with the reason, visible

The database going away (restart) stops nothing: the loop logs, waits and carries on, and
every state change is one UPDATE, so a crash at any point leaves the message pending.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
from prometheus_client import Counter

from integrations.db.connection import Database
from integrations.db.outbox import LeasedQueue, OutboxItem, _Outbox
from integrations.db.patients import PatientStore, ResolvedContext
from integrations.retry import Disposition, Outcome, RetryPolicy, retry

log = logging.getLogger(__name__)

STATE_WRITE_RETRY_SECONDS = 60.0

DELIVERIES_FAILED = Counter(
    "pacsflow_deliveries_failed_total",
    "Deliveries given up for good (one per outbox row), by sender",
    ["sender"],
)


class QueueSender:
    """The loop every sender shares: claim the next due row of a :class:`LeasedQueue`, handle
    it (``process``), and sleep until something is queued, a retry falls due or
    ``poll_seconds`` pass. ``periodic`` runs once per turn of the loop (alerts, clean-up)."""

    name = "queue"

    def __init__(
        self,
        database: Database,
        outbox: LeasedQueue,
        *,
        lease_seconds: float,
        poll_seconds: float = 1.0,
    ) -> None:
        self.database = database
        self.outbox = outbox
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self._listener: psycopg.Connection[Any] | None = None
        # Called once with each row given up for good and why, after it is marked failed
        # (the audit trail).
        self.on_failed: Callable[[Any, str], None] | None = None

    def process(self, item: Any) -> None:
        raise NotImplementedError

    def periodic(self) -> None:
        """Called on every turn of the loop; subclasses keep their own pace."""

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def run_forever(self, stop: threading.Event) -> None:
        log.info("%s sender started", self.name)
        while not stop.is_set():
            try:
                self.periodic()
                if self.step():
                    continue
                self._wait(stop)
            except psycopg.Error as error:
                log.warning("%s sender: database unavailable (%s); retrying", self.name, error)
                self.close()
                stop.wait(self.poll_seconds)
        self.close()
        log.info("%s sender stopped", self.name)

    def drain(self, timeout: float = 60.0) -> int:
        """Send until nothing is due (or ``timeout``); returns how many were handled."""
        handled = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.step():
            handled += 1
        return handled

    def step(self) -> bool:
        """Handle one due message; False when none is due."""
        item = self.outbox.claim(self.lease_seconds)
        if item is None:
            return False
        self.process(item)
        return True

    def gave_up(self, item: Any, reason: str) -> None:
        """A row was marked failed: one metric increment and one audit record."""
        DELIVERIES_FAILED.labels(self.name).inc()
        if self.on_failed is None:
            return
        try:
            self.on_failed(item, reason)
        except Exception:  # the failure stands; say so loudly (no patient data in the line)
            log.exception("%s row %s: failed, and its audit record failed too", self.name, item.id)

    def _persist(self, write: Any) -> None:
        """Record an outcome, insisting for a while: after a delivery, losing the 'sent' would
        only cost a duplicate (same control ID), but insisting usually avoids even that."""
        deadline = time.monotonic() + STATE_WRITE_RETRY_SECONDS
        while True:
            try:
                write()
                return
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _wait(self, stop: threading.Event) -> None:
        due = self.outbox.seconds_until_due()
        timeout = self.poll_seconds if due is None else min(self.poll_seconds, max(due, 0.01))
        if self._listener is None:
            try:
                self._listener = psycopg.connect(self.database.url, autocommit=True)
                self._listener.execute(f"LISTEN {self.outbox.channel}")
            except psycopg.Error:
                self._listener = None
                stop.wait(timeout)
                return
        try:
            for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error:
            self.close()


class QueueAgeAlert:
    """Tells the operators when the oldest message waiting in ``outbox`` is older than
    ``after_seconds``: once per episode (again only after the queue has caught up)."""

    def __init__(
        self,
        outbox: LeasedQueue,
        send: Callable[..., bool],
        *,
        what: str,
        after_seconds: float,
        check_seconds: float = 5.0,
    ) -> None:
        self.outbox = outbox
        self.send = send
        self.what = what
        self.after_seconds = after_seconds
        self.check_seconds = check_seconds
        self._next_check = 0.0
        self._told = False

    def check(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.check_seconds
        waiting, age = self.outbox.waiting()
        if age < self.after_seconds:
            self._told = False  # caught up (or never late): the next episode is told again
            return
        if self._told:
            return
        title = (
            f"{waiting} message(s) waiting for {self.what}; the oldest for {age / 60:.1f} min"
            f" (alert after {self.after_seconds / 60:g} min)"
        )
        lines = (
            "The outbox keeps them and retries; nothing is lost.",
            "See: pacsflow emr-outbox list; check the peer and the network to it.",
        )
        log.critical("ALERT %s (%s)", title, " ".join(lines))
        self._told = self.send(
            idempotency_key=f"queue-age-{self.what}-{int(time.time())}",
            title=title,
            lines=lines,
            facts={"alert": "outbox_queue_age", "waiting": waiting, "oldest_seconds": int(age)},
        )


class OutboxSender(QueueSender):
    """The EMR outboxes' loop; subclasses say how to render and how to deliver."""

    name = "outbox"
    outbox: _Outbox

    def __init__(
        self,
        database: Database,
        outbox: _Outbox,
        patients: PatientStore,
        schedule: RetryPolicy,
        *,
        lease_seconds: float,
        poll_seconds: float = 1.0,
        context_wait_seconds: float = 0.0,
    ) -> None:
        super().__init__(database, outbox, lease_seconds=lease_seconds, poll_seconds=poll_seconds)
        self.patients = patients
        self.schedule = schedule
        self.context_wait_seconds = context_wait_seconds
        # Called with each message the peer accepted, after it is marked sent (the audit trail).
        self.on_delivered: Callable[[OutboxItem], None] | None = None

    # -- to implement -------------------------------------------------------------------------

    def render(self, item: OutboxItem, resolved: ResolvedContext | None) -> Any:
        """The payload for a document row."""
        raise NotImplementedError

    def deliver(self, item: OutboxItem, payload: Any) -> tuple[Outcome, bool]:
        """Send once; returns the outcome and whether the payload reached the peer."""
        raise NotImplementedError

    def unreachable(self) -> str | None:
        """Why the peer cannot take a message now, asked before rendering one (rendering for a
        peer that is down is wasted work); None when it may."""
        return None

    def process(self, item: OutboxItem) -> None:
        payload = item.payload
        rendered: dict[str, Any] = {}
        if item.document is not None and payload is None:
            reason = self.unreachable()
            if reason is not None:
                self._record(item, retry(reason), False, rendered)
                return
            resolved = self.patients.resolve(item.patient_key)
            if resolved is None and self.context_wait_seconds > 0:
                waited = (item.claimed_at - item.created_at).total_seconds()
                if waited < self.context_wait_seconds:
                    until = item.created_at + timedelta(seconds=self.context_wait_seconds)
                    self.outbox.defer(item.id, until)
                    return
            try:
                payload = self.render(item, resolved)
            except Exception as error:  # a document that cannot be rendered will never be
                log.exception("%s: cannot render outbox message %s", self.name, item.key)
                reason = f"cannot render: {type(error).__name__}: {error}"
                self.outbox.mark_failed(item.id, reason)
                self.gave_up(item, reason)
                return
            # Recorded with the outcome (one write per attempt). Should the process die
            # between sending and recording, the message is rendered again next time under
            # the same control ID / identifiers, which is what receivers deduplicate on.
            rendered = {
                "payload": self.outbox.payload_value(payload),
                "rendered_revision": resolved.context.revision if resolved else None,
                "clinical_context": "adt" if resolved else "none",
            }
        outcome, reached_peer = self.deliver(item, payload)
        self._record(item, outcome, reached_peer, rendered)

    def _after_delivery(self, item: OutboxItem) -> None:
        if self.on_delivered is None:
            return
        try:
            self.on_delivered(item)
        except Exception:  # the delivery stands; say so loudly (no patient data in the line)
            log.exception("%s %s: delivered, but its audit record failed", self.name, item.key)

    def _record(
        self, item: OutboxItem, outcome: Outcome, reached_peer: bool, rendered: dict[str, Any]
    ) -> None:
        status = {**rendered, **(outcome.status or {})}
        if outcome.disposition is Disposition.SENT:
            self._persist(lambda: self.outbox.mark_sent(item.id, **status))
            log.info("%s %s delivered (attempt %d)", self.name, item.key, item.attempts)
            self._after_delivery(item)
        elif outcome.disposition is Disposition.FAILED:
            self._persist(lambda: self.outbox.mark_failed(item.id, outcome.detail, **status))
            log.error("%s %s failed: %s", self.name, item.key, outcome.detail)
            self.gave_up(item, outcome.detail)
        else:
            if not reached_peer and item.document is not None:
                # The peer never saw it: render it afresh next time (a late ADT gets in).
                status.update(payload=None, rendered_revision=None)
            delay = self.schedule.delay(item.attempts)
            self._persist(
                lambda: self.outbox.schedule_retry(item.id, delay, outcome.detail, **status)
            )
            log.warning(
                "%s %s attempt %d: %s; next try in %.1f s",
                self.name,
                item.key,
                item.attempts,
                outcome.detail,
                delay,
            )
