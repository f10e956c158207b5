"""The results sender: result objects from the results outbox to the PACS by C-STORE (I/O).

What happens to a claimed delivery (one object, one destination)::

    same UID and hash stored there before           sent, "already stored" (nothing sent)
    file unreadable                                 failed (alerted)
    file rewritten since queued (a rerun)           superseded: its newer row delivers it
    C-STORE success or warning                      sent, "stored", with the status code
    no connection, aborted, timeout, busy           retry after the backoff (with jitter)
    association rejected permanently                retry too: a configuration an operator
                                                    fixes (the late alert tells them)
    C-STORE failure status for this object          failed (alerted)
    retry would fall after give_up_at               failed (alerted)

While a destination's deliveries back off, it is probed with a C-ECHO every ``[results]
probe_seconds``; when it answers, everything waiting for it is due at once, so recovery after
an outage of any length takes seconds, not the last backoff step.

The loop, leases and backoff are the EMR senders' (:class:`integrations.emr.sender.QueueSender`,
:class:`integrations.retry.RetryPolicy`). Each outcome is also recorded as the study's
``deliver_results:<destination>`` step (counts, attempts, last stored at), so the run
history shows what became of what the run queued.

Alerts (:class:`DeliveryAlerts`) go to ``[results] alert_team`` over that escalation team's
channels (never the EMR inbox) and are always logged at CRITICAL: once per row when it has
waited longer than ``alert_after_minutes`` (rows that turn late later in the same outage are
told together, at most once per that period), and once per row when it failed (at the next
check, every ``ALERT_CHECK_SECONDS``). An alert no channel delivered is tried again at the
next check; without a team the log is the alert.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from integrations.db.analyses import AnalysisStore
from integrations.db.connection import Database
from integrations.db.results_outbox import (
    PACS_DESTINATION,
    ResultDelivery,
    ResultsOutbox,
    file_sha256,
)
from integrations.db.store import StudyStore
from integrations.db.worklist import WorklistStore
from integrations.dicom.scu import DicomClient, pacs_peer
from integrations.emr.sender import QueueSender
from integrations.errors import (
    ConfigError,
    DimseStatusError,
    PacsflowError,
    PeerRejectedError,
    TransientError,
)
from integrations.escalation.channels import Channel, build_channels
from integrations.escalation.operational import send_operational_alert
from integrations.retry import Disposition, Outcome, RetryPolicy, failed, retry, sent
from integrations.settings import Settings

log = logging.getLogger(__name__)

ALERT_CHECK_SECONDS = 30.0
MAX_STUDIES_NAMED = 10


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def step_name(destination: str) -> str:
    return f"deliver_results:{destination}"


class DeliveryAlerts:
    """Late and failed deliveries, told to the site's operators (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        outbox: ResultsOutbox,
        *,
        channels: Mapping[str, Channel] | None = None,
        peers: Mapping[str, str] | None = None,
        check_seconds: float = ALERT_CHECK_SECONDS,
    ) -> None:
        self.settings = settings
        self.database = database
        self.outbox = outbox
        self.peers = dict(peers or {})
        self.check_seconds = check_seconds
        self._channels = dict(channels) if channels is not None else None
        self._next_check = 0.0
        self._last_late_alert: float | None = None

    def channels(self) -> Mapping[str, Channel]:
        if self._channels is None:
            try:
                self._channels = dict(build_channels(self.settings, self.database))
            except ConfigError as error:
                log.error("ALERT delivery alerts cannot use the escalation channels: %s", error)
                self._channels = {}
        return self._channels

    def check(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.check_seconds
        threshold = self.settings.results.alert_after_minutes * 60.0
        # Rows that turn late during one long outage are told at most once per threshold
        # period (each row once), not in a stream of alerts every check.
        if self._last_late_alert is None or now - self._last_late_alert >= threshold:
            late = self.outbox.late(threshold)
            if late and self.alert("late", late):
                self._last_late_alert = now
        failures = self.outbox.failed_unalerted()
        if failures:
            self.alert("failure", failures)

    def alert(self, kind: Literal["late", "failure"], rows: Sequence[dict[str, Any]]) -> bool:
        """Tell the operators about ``rows``; True (and the rows marked) once it went out."""
        destinations = sorted({row["destination"] for row in rows})
        where = ", ".join(self.peers.get(d, d) for d in destinations)
        studies = sorted({row["study_instance_uid"] for row in rows})
        oldest = min(row["created_at"] for row in rows)
        minutes = self.settings.results.alert_after_minutes
        if kind == "late":
            title = (
                f"{len(rows)} result object(s) of {len(studies)} study(ies) not delivered to"
                f" {where} after {minutes:g} min"
            )
        else:
            title = (
                f"{len(rows)} result object(s) of {len(studies)} study(ies) could not be"
                f" delivered to {where}: failed"
            )
        errors = sorted({row["last_error"] for row in rows if row["last_error"]})
        lines = (
            f"Oldest queued at: {oldest.isoformat()}",
            f"Last error: {errors[-1] if errors else '(none recorded)'}",
            "Studies: "
            + ", ".join(studies[:MAX_STUDIES_NAMED])
            + (f" and {len(studies) - MAX_STUDIES_NAMED} more" if len(studies) > 10 else ""),
            "See: pacsflow results-outbox list; re-drive: pacsflow results-outbox retry",
        )
        log.critical("ALERT %s (%s)", title, "; ".join(lines))
        delivered = self._send(kind, rows, title, lines, oldest, studies)
        if delivered:
            self.outbox.mark_alerted([row["id"] for row in rows], kind)
        return delivered

    def _send(
        self,
        kind: str,
        rows: Sequence[dict[str, Any]],
        title: str,
        lines: tuple[str, ...],
        oldest: datetime,
        studies: list[str],
    ) -> bool:
        delivered = send_operational_alert(
            self.settings,
            self.channels(),
            self.settings.results.alert_team,
            idempotency_key=f"results-{kind}-{rows[0]['id']}-{len(rows)}",
            title=title,
            lines=lines,
            facts={
                "alert": f"results_delivery_{kind}",
                "objects": len(rows),
                "studies": studies[:MAX_STUDIES_NAMED],
                "oldest_queued_at": oldest.isoformat(),
                "destinations": sorted({row["destination"] for row in rows}),
            },
        )
        if not delivered:
            log.error("ALERT results delivery alert: trying again at the next check")
        return delivered


class ResultsSender(QueueSender):
    """Drains the results outbox to the configured destinations (today: the [pacs] peer)."""

    name = "results"
    outbox: ResultsOutbox

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        clients: Mapping[str, DicomClient] | None = None,
        channels: Mapping[str, Channel] | None = None,
        alert_check_seconds: float = ALERT_CHECK_SECONDS,
    ) -> None:
        results = settings.results
        self.clients = dict(clients or {PACS_DESTINATION: DicomClient(pacs_peer(settings))})
        # One object per association, each DIMSE step bounded by the peer's timeout.
        lease = max(client.peer.timeout_seconds for client in self.clients.values()) * 4 + 30.0
        super().__init__(
            database,
            ResultsOutbox(database),
            lease_seconds=lease,
            poll_seconds=results.poll_seconds,
        )
        self.settings = settings
        self.schedule = RetryPolicy(results.retry_delays_seconds, results.retry_jitter)
        # the same peers with a short connect wait: a probe of a black-holed PACS costs little
        self.probes = {
            name: DicomClient(
                replace(client.peer, connect_timeout_seconds=min(5.0, client.peer.timeout_seconds))
            )
            for name, client in self.clients.items()
        }
        self.probe_seconds = results.probe_seconds
        self._next_probe = 0.0
        self.studies = StudyStore(database)
        # Called with each object the destination stored (not "already stored"): the audit trail.
        self.on_delivered: Callable[[ResultDelivery], None] | None = None
        self.analyses = AnalysisStore(database)
        self.worklist = WorklistStore(database)
        self.alerts = DeliveryAlerts(
            settings,
            database,
            self.outbox,
            channels=channels,
            peers={name: client.peer.label for name, client in self.clients.items()},
            check_seconds=alert_check_seconds,
        )

    def periodic(self) -> None:
        self.alerts.check()
        self.probe()

    def probe(self) -> None:
        """C-ECHO the destinations deliveries are backing off from; one that answers gets
        everything waiting for it at once, instead of at each row's next backoff."""
        now = time.monotonic()
        if now < self._next_probe:
            return
        self._next_probe = now + self.probe_seconds
        for destination in self.outbox.backing_off():
            probe = self.probes.get(destination)
            if probe is None:
                continue
            try:
                probe.echo()
            except PacsflowError:
                continue
            due = self.outbox.due_now(destination)
            log.info("results: %s answers again; %d delivery(ies) due now", probe.peer.label, due)

    def process(self, item: ResultDelivery) -> None:
        outcome: Outcome | None
        client = self.clients.get(item.destination)
        if client is None:
            outcome = failed(f"no destination {item.destination!r} is configured")
        else:
            try:
                outcome = self.deliver(item, client)
            except Exception as error:  # a bug must not stop the queue; the row says why
                log.exception("results: delivery %d raised", item.id)
                outcome = failed(f"{type(error).__name__}: {error}")
        if outcome is not None:
            self._record(item, outcome)

    def deliver(self, item: ResultDelivery, client: DicomClient) -> Outcome | None:
        """Deliver once; None when the row was superseded meanwhile (nothing to record)."""
        path = Path(item.path)
        label = client.peer.label
        if self.outbox.replaced_by_newer_result(item.sop_instance_uid):
            self.outbox.mark_superseded(item.id)
            log.info("results: delivery %d skipped: a newer result replaced it", item.id)
            return None
        earlier = self.outbox.stored(item.destination, item.sop_instance_uid)
        if any(row["content_sha256"] == item.content_sha256 for row in earlier):
            return sent("already stored", outcome="already stored", peer=label)
        try:
            digest = file_sha256(path)
        except OSError as error:
            return failed(f"result file unreadable: {error}", peer=label)
        if digest != item.content_sha256:
            # A rerun rewrote the file and queued its new content: that row delivers it.
            self.outbox.mark_superseded(item.id)
            log.info("results: delivery %d superseded by a newer content", item.id)
            return None
        if earlier:
            log.warning(
                "results: %s %s was stored on %s with other content before; sending this one",
                item.kind,
                item.sop_instance_uid,
                label,
            )
        try:
            codes = client.store_files([path], study_instance_uid=item.study_instance_uid)
        except TransientError as error:
            return retry(_describe(error), peer=label)
        except DimseStatusError as error:
            return failed(_describe(error), status_code=error.status, peer=label)
        except PeerRejectedError as error:
            return retry(_describe(error), peer=label)
        return sent("stored", outcome="stored", status_code=codes[0], peer=label)

    def _record(self, item: ResultDelivery, outcome: Outcome) -> None:
        status = dict(outcome.status or {})
        if outcome.disposition is Disposition.RETRY:
            delay = self.schedule.next_delay(
                item.attempts, now=time.time(), deadline=item.give_up_at.timestamp()
            )
            if delay is None:
                hours = self.settings.results.give_up_after_hours
                outcome = failed(f"gave up after {hours:g} h: {outcome.detail}", **status)
            else:
                self._persist(
                    lambda: self.outbox.schedule_retry(item.id, delay, outcome.detail, **status)
                )
                log.warning(
                    "results: %s %s of study %s to %s, attempt %d: %s; next try in %.1f s",
                    item.kind,
                    item.sop_instance_uid,
                    item.study_instance_uid,
                    item.destination,
                    item.attempts,
                    outcome.detail,
                    delay,
                )
        if outcome.disposition is Disposition.SENT:
            self._persist(lambda: self.outbox.mark_sent(item.id, **status))
            if item.destination == PACS_DESTINATION:
                self.analyses.mark_stored([item.sop_instance_uid])
                if item.part == "report":
                    self.worklist.mark_results_stored(item.study_instance_uid)
            if self.on_delivered is not None and status.get("outcome") == "stored":
                try:
                    self.on_delivered(item)
                except Exception:  # the delivery stands; the missing record is an alert
                    log.exception(
                        "results: delivery %d stored, but its audit record failed", item.id
                    )
            log.info(
                "results: %s %s of study %s %s on %s (attempt %d)",
                item.kind,
                item.sop_instance_uid,
                item.study_instance_uid,
                outcome.detail,
                status.get("peer", item.destination),
                item.attempts,
            )
        elif outcome.disposition is Disposition.FAILED:
            self._persist(lambda: self.outbox.mark_failed(item.id, outcome.detail, **status))
            log.error(
                "results: %s %s of study %s to %s failed: %s",
                item.kind,
                item.sop_instance_uid,
                item.study_instance_uid,
                item.destination,
                outcome.detail,
            )
            self.gave_up(item, outcome.detail)
        self._record_step(item, outcome)

    def _record_step(self, item: ResultDelivery, outcome: Outcome) -> None:
        summary = self.outbox.study_summary(item.destination, item.study_instance_uid)
        state = "failed" if summary["failed"] else "running" if summary["pending"] else "completed"
        client = self.clients.get(item.destination)
        detail = {
            "destination": client.peer.label if client else item.destination,
            "stored": summary["stored"],
            "already_stored": summary["already_stored"],
            "pending": summary["pending"],
            "failed": summary["failed"],
            "attempts": summary["max_attempts"],
            "last_stored_at": summary["last_stored_at"],
            "last": f"{item.kind} {outcome.disposition.value}: {outcome.detail}",
        }
        self.studies.record_step(
            item.study_instance_uid, item.generation, step_name(item.destination), state, detail
        )
