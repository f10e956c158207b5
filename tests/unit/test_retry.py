"""The one retry policy: schedule, jitter bounds, last delay repeating, give-up, classification."""

from __future__ import annotations

import random

import pytest

from integrations.errors import DimseStatusError, PeerBusyError, PeerRejectedError
from integrations.escalation.sender import channel_policy
from integrations.retry import Disposition, RetryPolicy, disposition_of
from integrations.settings import EscalationSettings


def test_last_delay_repeats_for_ever_without_a_limit() -> None:
    policy = RetryPolicy([1, 5, 30])
    assert [policy.delay(attempt) for attempt in (1, 2, 3, 4, 50)] == [1, 5, 30, 30, 30]
    assert policy.next_delay(1000) == 30


@pytest.mark.parametrize("jitter", [0.1, 0.5, 1.0])
def test_jitter_stays_within_its_fraction_and_spreads(jitter: float) -> None:
    policy = RetryPolicy([10, 20], jitter=jitter)
    rng = random.Random(3)
    delays = [policy.delay(2, rng) for _ in range(500)]
    assert min(delays) >= 20 * (1 - jitter) and max(delays) <= 20 * (1 + jitter)
    assert len(set(delays)) > 400 and min(delays) < 20 < max(delays)


def test_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy([0.5, 2.0], max_attempts=3)
    assert [policy.next_delay(attempt) for attempt in (1, 2, 3, 4)] == [0.5, 2.0, None, None]
    assert not policy.exhausted(2) and policy.exhausted(3)


def test_gives_up_when_the_next_try_would_pass_the_deadline() -> None:
    policy = RetryPolicy([5.0], budget_seconds=12.0)
    deadline = policy.deadline(100.0)
    assert deadline == 112.0
    assert policy.next_delay(1, now=106.9, deadline=deadline) == 5.0
    assert policy.next_delay(2, now=107.0, deadline=deadline) is None
    assert RetryPolicy([5.0]).deadline(100.0) is None


def test_only_transient_errors_are_retried() -> None:
    assert disposition_of(PeerBusyError("busy")) is Disposition.RETRY
    assert disposition_of(PeerRejectedError("AR")) is Disposition.FAILED
    assert disposition_of(DimseStatusError("C-STORE", 0xC000)) is Disposition.FAILED
    assert disposition_of(ValueError("bug")) is Disposition.FAILED


def test_escalation_channels_use_the_policy_from_their_settings() -> None:
    policy = channel_policy(
        EscalationSettings(
            attempts_per_channel=3, retry_delays_seconds=[0.5, 2.0], channel_budget_seconds=10
        )
    )
    assert policy == RetryPolicy((0.5, 2.0), jitter=0.0, max_attempts=3, budget_seconds=10.0)


@pytest.mark.parametrize(
    "options",
    [{"delays": [-1.0]}, {"delays": [1.0], "jitter": 1.5}, {"delays": [], "max_attempts": -1}],
)
def test_nonsense_policies_are_refused(options: dict) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**options)
