"""M/M/c queue formulas: Erlang C and Cobham's non-preemptive priorities (pure).

The reference the simulation is tested against, and the quick estimate ``pacsflow capacity``
prints beside it. Poisson arrivals, exponential service with the same rate for every class,
``c`` identical workers, classes served highest priority first without preemption:

* Erlang C: P(wait > 0) = C(c, a) with a = lambda / mu;
  mean wait Wq = C(c, a) / (c mu - lambda); P(wait > t) = C(c, a) exp(-(c mu - lambda) t).
* Cobham (1954): the mean wait of class k (1 = highest) is
  W_k = [C(c, a) / (c mu)] / [(1 - s_(k-1)) (1 - s_k)], with s_k the load of classes 1..k
  divided by c mu.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival waits, for ``servers`` workers and load a = lambda/mu."""
    if servers < 1:
        raise ValueError("servers must be at least 1")
    if offered_load < 0:
        raise ValueError("offered_load must not be negative")
    if offered_load >= servers:
        return 1.0
    # Erlang B by its stable recursion, then C from B.
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered_load * blocking / (k + offered_load * blocking)
    utilisation = offered_load / servers
    return blocking / (1 - utilisation + utilisation * blocking)


def mean_wait(servers: int, arrival_rate: float, service_rate: float) -> float:
    """Mean queueing delay Wq of M/M/c (seconds when rates are per second)."""
    if arrival_rate >= servers * service_rate:
        return math.inf
    load = arrival_rate / service_rate
    return erlang_c(servers, load) / (servers * service_rate - arrival_rate)


def wait_exceeds(servers: int, arrival_rate: float, service_rate: float, seconds: float) -> float:
    """P(wait > seconds) in M/M/c, first come first served."""
    if arrival_rate >= servers * service_rate:
        return 1.0
    load = arrival_rate / service_rate
    return erlang_c(servers, load) * math.exp(-(servers * service_rate - arrival_rate) * seconds)


def wait_percentile(servers: int, arrival_rate: float, service_rate: float, q: float) -> float:
    """The q-quantile (0 < q < 1) of the wait in M/M/c, first come first served."""
    if arrival_rate >= servers * service_rate:
        return math.inf
    waiting = erlang_c(servers, arrival_rate / service_rate)
    if 1 - q >= waiting:
        return 0.0
    return math.log(waiting / (1 - q)) / (servers * service_rate - arrival_rate)


def priority_mean_waits(
    servers: int, arrival_rates: Sequence[float], service_rate: float
) -> list[float]:
    """Mean wait per class (highest priority first), non-preemptive M/M/c (Cobham)."""
    total = sum(arrival_rates)
    capacity = servers * service_rate
    if total >= capacity:
        return [math.inf] * len(arrival_rates)
    base = erlang_c(servers, total / service_rate) / capacity
    waits, before = [], 0.0
    for rate in arrival_rates:
        after = before + rate / capacity
        waits.append(base / ((1 - before) * (1 - after)))
        before = after
    return waits
