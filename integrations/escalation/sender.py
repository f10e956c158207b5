"""Deliver one notification over a team's ordered channels: retries, then the next channel
(I/O: it sleeps between attempts and runs channels in threads).

``delivery = "first"``: channels in order; a channel that delivered to at least one target
ends the delivery, one that did not (after ``attempts`` tries per target, transient failures
only) hands over to the next. ``delivery = "all"``: every channel at once, each with its own
retries. Every attempt is reported through ``on_attempt`` as it finishes, so the caller can
record the first delivery the moment it happens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from integrations.errors import PacsflowError
from integrations.escalation.channels import Channel, Target
from integrations.escalation.notification import Message
from integrations.retry import Disposition, RetryPolicy, disposition_of
from integrations.settings import EscalationSettings

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "failed", "skipped"]


def channel_policy(escalation: EscalationSettings) -> RetryPolicy:
    """Per channel: ``attempts_per_channel`` tries per target, paused by
    ``retry_delays_seconds``, within ``channel_budget_seconds`` for the whole channel."""
    return RetryPolicy(
        delays=tuple(escalation.retry_delays_seconds),
        max_attempts=escalation.attempts_per_channel,
        budget_seconds=escalation.channel_budget_seconds,
    )


@dataclass(frozen=True)
class Attempt:
    channel: str
    target: str
    attempt: int
    outcome: Outcome
    detail: str
    started_at: datetime
    finished_at: datetime


@dataclass
class Delivery:
    attempts: list[Attempt] = field(default_factory=list)
    delivered_channels: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return bool(self.delivered_channels)


def _deliver_on_channel(
    notification: Message,
    channel: Channel | None,
    name: str,
    policy: RetryPolicy,
    report: Callable[[Attempt], None],
) -> bool:
    now = datetime.now(UTC)
    if channel is None:
        report(Attempt(name, "", 0, "skipped", "channel not configured", now, now))
        return False
    targets: list[Target] = channel.targets(notification)
    if not targets:
        report(Attempt(name, "", 0, "skipped", "no address for these recipients", now, now))
        return False
    delivered_any = False
    deadline = policy.deadline(time.monotonic())
    for target in targets:
        attempt = 1
        while True:
            started = datetime.now(UTC)
            try:
                detail = channel.send(notification, target)
            except Exception as error:
                text = f"{type(error).__name__}: {error}"
                if not isinstance(error, PacsflowError):
                    log.exception("channel %s raised an unexpected error", name)
                report(
                    Attempt(name, target.label, attempt, "failed", text, started, datetime.now(UTC))
                )
                if disposition_of(error) is not Disposition.RETRY:
                    break
                # None: this channel had its share of attempts or time, the next one gets a chance
                pause = policy.next_delay(attempt, now=time.monotonic(), deadline=deadline)
                if pause is None:
                    break
                time.sleep(pause)
                attempt += 1
                continue
            report(
                Attempt(
                    name, target.label, attempt, "delivered", detail, started, datetime.now(UTC)
                )
            )
            delivered_any = True
            break
    return delivered_any


def deliver(
    notification: Message,
    channels: Mapping[str, Channel],
    order: Sequence[str],
    mode: Literal["first", "all"],
    policy: RetryPolicy,
    on_attempt: Callable[[Attempt], None] | None = None,
) -> Delivery:
    """Send ``notification`` on ``order``'s channels per ``mode``; never raises for a peer."""
    result = Delivery()
    lock = threading.Lock()

    def report(attempt: Attempt) -> None:
        with lock:
            result.attempts.append(attempt)
            if attempt.outcome == "delivered" and attempt.channel not in result.delivered_channels:
                result.delivered_channels.append(attempt.channel)
        if on_attempt is not None:
            try:
                on_attempt(attempt)
            except Exception:
                log.exception("recording attempt on %s failed", attempt.channel)

    if mode == "first":
        for name in order:
            if _deliver_on_channel(notification, channels.get(name), name, policy, report):
                break
        return result
    with ThreadPoolExecutor(max_workers=max(1, len(order)), thread_name_prefix="notify") as pool:
        futures = [
            pool.submit(_deliver_on_channel, notification, channels.get(name), name, policy, report)
            for name in order
        ]
        for future in futures:
            future.result()
    return result
