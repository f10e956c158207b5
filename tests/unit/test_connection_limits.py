"""Admission rules of a listener: per-source and total limits, the oldest unproven gives way."""

from __future__ import annotations

from integrations.connection_limits import ConnectionLimiter


def test_a_full_source_gives_the_oldest_unproven_place_to_the_newcomer():
    closed: list[str] = []
    limiter = ConnectionLimiter(per_source=2, max_unproven=10)
    first = limiter.admit("10.0.0.1", lambda: closed.append("first"))
    second = limiter.admit("10.0.0.1", lambda: closed.append("second"))
    assert first.slot and second.slot
    limiter.prove(first.slot)
    third = limiter.admit("10.0.0.1", lambda: closed.append("third"))
    assert third.slot is not None and third.evicted is second.slot
    assert limiter.counts() == (2, 1)
    assert limiter.admit("10.0.0.2", lambda: None).evicted is None  # other sources unaffected


def test_a_source_full_of_proven_connections_is_refused():
    limiter = ConnectionLimiter(per_source=1, max_unproven=10)
    held = limiter.admit("10.0.0.1", lambda: None).slot
    assert held is not None
    limiter.prove(held)
    refused = limiter.admit("10.0.0.1", lambda: None)
    assert refused.slot is None and "10.0.0.1" in refused.reason
    limiter.release(held)
    limiter.release(held)  # idempotent: the place is freed once
    assert limiter.counts() == (0, 0)
    assert limiter.admit("10.0.0.1", lambda: None).slot is not None


def test_the_unproven_pool_and_the_total_are_bounded_across_sources():
    limiter = ConnectionLimiter(per_source=8, max_unproven=3, max_total=4)
    slots = [limiter.admit(f"10.0.0.{i}", lambda: None).slot for i in range(3)]
    fourth = limiter.admit("10.0.0.9", lambda: None)
    assert fourth.evicted is slots[0]  # pool full: the oldest unproven anywhere gives way
    assert limiter.counts() == (3, 3)
    for admitted in [*slots[1:], fourth.slot]:
        assert admitted is not None
        limiter.prove(admitted)
    limiter.admit("10.0.0.5", lambda: None)
    assert limiter.counts() == (4, 1)
    full = limiter.admit("10.0.0.6", lambda: None)
    assert full.evicted is not None  # total full: the one unproven gives way
    assert limiter.admit("10.0.0.7", lambda: None).evicted is not None
    for slot in limiter.unproven():
        limiter.prove(slot)
    assert limiter.admit("10.0.0.8", lambda: None).slot is None
