"""Study completion policy: when a study counts as closed (pure).

"On study close, never on arrival": a study is complete when no instance has arrived for the
quiet period, and is closed anyway once it has been open longer than the hard ceiling (a
modality that never stops sending must not hold results back forever).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class CloseReason(StrEnum):
    QUIET = "quiet period elapsed"
    CEILING = "open longer than the hard ceiling"


@dataclass(frozen=True)
class CompletionPolicy:
    quiet_seconds: float
    max_open_seconds: float

    def __post_init__(self) -> None:
        if self.quiet_seconds <= 0:
            raise ValueError("quiet_seconds must be positive")
        if self.max_open_seconds < self.quiet_seconds:
            raise ValueError("max_open_seconds must not be shorter than quiet_seconds")


@dataclass(frozen=True)
class StudyActivity:
    study_instance_uid: str
    generation: int
    first_received_at: datetime
    last_received_at: datetime


def close_reason(
    activity: StudyActivity, policy: CompletionPolicy, now: datetime
) -> CloseReason | None:
    """Why the study is complete at ``now``, or None while it is still receiving."""
    if now - activity.last_received_at >= timedelta(seconds=policy.quiet_seconds):
        return CloseReason.QUIET
    if now - activity.first_received_at >= timedelta(seconds=policy.max_open_seconds):
        return CloseReason.CEILING
    return None


def close_time(activity: StudyActivity, policy: CompletionPolicy) -> datetime:
    """The moment the study closes if nothing else arrives (the start of every latency clock)."""
    quiet = activity.last_received_at + timedelta(seconds=policy.quiet_seconds)
    ceiling = activity.first_received_at + timedelta(seconds=policy.max_open_seconds)
    return min(quiet, ceiling)
