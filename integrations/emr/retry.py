"""When to try a message again, and what an attempt's outcome means for it (pure)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class RetrySchedule:
    """Backoff after each failed attempt: ``delays[attempt - 1]``, the last one repeating,
    spread by +/- ``jitter`` (a fraction) so that many messages do not retry in lockstep."""

    delays: Sequence[float]
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if not self.delays:
            return 0.0
        base = float(self.delays[min(max(attempt, 1), len(self.delays)) - 1])
        if self.jitter <= 0 or base <= 0:
            return base
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1.0 + spread))


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
