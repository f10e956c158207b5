"""The one backoff and retry policy of pacsflow: when to try again, when to give up (pure).

Every retrying user goes through it: the EMR outboxes (HL7, FHIR), the results outbox and the
escalation channels. A :class:`RetryPolicy` holds the schedule (``delays[attempt - 1]`` after
failed attempt number ``attempt``, the last value repeating, spread by +/- ``jitter`` so that
many messages do not retry in lockstep) and the give-up rules (``max_attempts``, or a
deadline the next try would pass). :func:`disposition_of` is the classification hook for an
error a peer call raised: transient errors are retried, everything else is not. The outcome
of one delivery attempt is an :class:`Outcome` (sent, retry, failed).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from integrations.errors import is_transient


class Disposition(StrEnum):
    SENT = "sent"  # the peer accepted it: the message leaves the outbox
    RETRY = "retry"  # try again after the backoff
    FAILED = "failed"  # the peer refused it for good: visible, retried only by an operator


@dataclass(frozen=True)
class Outcome:
    disposition: Disposition
    detail: str = ""
    status: dict[str, object] | None = None  # columns to record (ack_code, http_status...)


def sent(detail: str = "", **status: object) -> Outcome:
    return Outcome(Disposition.SENT, detail, status)


def retry(detail: str, **status: object) -> Outcome:
    return Outcome(Disposition.RETRY, detail, status)


def failed(detail: str, **status: object) -> Outcome:
    return Outcome(Disposition.FAILED, detail, status)


def disposition_of(error: BaseException) -> Disposition:
    """Classify a failed peer call: a :class:`TransientError` is retried, anything else fails."""
    return Disposition.RETRY if is_transient(error) else Disposition.FAILED


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff after each failed attempt, and when to stop.

    ``delays``: seconds after failed attempt 1, 2, ... (the last repeats); ``jitter``: a
    fraction, each delay is spread uniformly by +/- that much; ``max_attempts``: give up after
    that many attempts (0: never); ``budget_seconds``: give up once the next try would start
    that long after the first attempt (see :meth:`deadline`).
    """

    delays: Sequence[float]
    jitter: float = 0.0
    max_attempts: int = 0
    budget_seconds: float | None = None

    def __post_init__(self) -> None:
        if any(delay < 0 for delay in self.delays):
            raise ValueError("retry delays must not be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError("retry jitter must be within [0, 1]")
        if self.max_attempts < 0:
            raise ValueError("max_attempts must not be negative")
        if self.budget_seconds is not None and self.budget_seconds <= 0:
            raise ValueError("budget_seconds must be positive")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if not self.delays:
            return 0.0
        base = float(self.delays[min(max(attempt, 1), len(self.delays)) - 1])
        if self.jitter <= 0 or base <= 0:
            return base
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1.0 + spread))

    def deadline(self, first_attempt_at: float) -> float | None:
        """When the budget of attempts that began at ``first_attempt_at`` runs out, if any."""
        return None if self.budget_seconds is None else first_attempt_at + self.budget_seconds

    def exhausted(self, attempts: int) -> bool:
        """Whether ``attempts`` attempts are all this policy allows."""
        return bool(self.max_attempts) and attempts >= self.max_attempts

    def next_delay(
        self,
        attempt: int,
        *,
        now: float | None = None,
        deadline: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """The pause after failed attempt ``attempt``, or None to give up: the attempts are
        exhausted, or the next try would start at or after ``deadline`` (same clock as ``now``)."""
        if self.exhausted(attempt):
            return None
        pause = self.delay(attempt, rng)
        if deadline is not None and now is not None and now + pause >= deadline:
            return None
        return pause
