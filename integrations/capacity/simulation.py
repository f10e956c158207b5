"""Discrete-event simulation of the dispatch queue at a site's peak (pure; SimPy).

Studies arrive per class (modality x urgency tier) as Poisson processes; ``workers`` identical
workers take the waiting study of the best tier first (Critical, then Urgent, then Routine),
first closed first within a tier, and never interrupt a study they started: the order in which
the engine's warm workers claim the dispatch queue (``integrations/dicom/priority``: order
priority first; STAT/ED orders are the Critical tier here). A study's result time is its queue
delay plus its service time (the worker's time on it) plus a fixed delay no worker spends
(study close detection, the results' C-STORE).

Service times come from a :class:`ServiceTime`: measured samples drawn with replacement, a
log-normal fitted to a median and a 95th percentile (what ``bench/`` prints), or exponential
(the M/M/c case the tests hold against Erlang C).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import simpy

TIERS = ("Critical", "Urgent", "Routine")
Z95 = 1.6448536269514722  # standard normal 95th percentile


class ServiceTime:
    """Seconds a worker spends on one study of a class."""

    mean: float

    def sample(self, rng: random.Random) -> float:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Exponential(ServiceTime):
    mean: float

    def __post_init__(self) -> None:
        if self.mean <= 0:
            raise ValueError("mean must be positive")

    def sample(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean)

    def describe(self) -> str:
        return f"exponential, mean {self.mean:.2f} s"


@dataclass(frozen=True)
class LogNormal(ServiceTime):
    """Fitted to a median and a 95th percentile (p95 >= median)."""

    median: float
    p95: float

    def __post_init__(self) -> None:
        if self.median <= 0 or self.p95 < self.median:
            raise ValueError("need 0 < median <= p95")

    @property
    def sigma(self) -> float:
        return math.log(self.p95 / self.median) / Z95

    @property
    def mean(self) -> float:  # type: ignore[override]
        return self.median * math.exp(self.sigma**2 / 2)

    def sample(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median), self.sigma)

    def describe(self) -> str:
        return f"log-normal, median {self.median:.2f} s, p95 {self.p95:.2f} s"


@dataclass(frozen=True)
class Empirical(ServiceTime):
    """Measured service times, drawn with replacement."""

    samples: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.samples or min(self.samples) < 0:
            raise ValueError("need at least one non-negative sample")

    @property
    def mean(self) -> float:  # type: ignore[override]
        return sum(self.samples) / len(self.samples)

    def sample(self, rng: random.Random) -> float:
        return rng.choice(self.samples)

    def describe(self) -> str:
        ordered = sorted(self.samples)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return f"{len(ordered)} measured runs, median {ordered[len(ordered) // 2]:.2f} s, p95 {p95:.2f} s"


@dataclass(frozen=True)
class StudyClass:
    """Studies of one modality and urgency tier arriving at ``per_hour`` at the peak."""

    modality: str
    tier: str
    per_hour: float
    service: ServiceTime

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ValueError(f"tier must be one of {TIERS}")
        if self.per_hour < 0:
            raise ValueError("per_hour must not be negative")

    @property
    def priority(self) -> int:
        return TIERS.index(self.tier)

    @property
    def name(self) -> str:
        return f"{self.modality}/{self.tier}"


@dataclass
class ClassOutcome:
    study_class: StudyClass
    waits: list[float] = field(default_factory=list)
    services: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class SimulationResult:
    workers: int
    hours: float
    outcomes: tuple[ClassOutcome, ...]
    busy_fraction: float
    fixed_seconds: float

    def _select(self, tier: str | None, modality: str | None) -> list[ClassOutcome]:
        return [
            outcome
            for outcome in self.outcomes
            if (tier is None or outcome.study_class.tier == tier)
            and (modality is None or outcome.study_class.modality == modality)
        ]

    def waits(self, tier: str | None = None, modality: str | None = None) -> np.ndarray:
        chosen = self._select(tier, modality)
        return np.array([w for outcome in chosen for w in outcome.waits], dtype=float)

    def result_times(self, tier: str | None = None, modality: str | None = None) -> np.ndarray:
        chosen = self._select(tier, modality)
        return np.array(
            [
                wait + service + self.fixed_seconds
                for outcome in chosen
                for wait, service in zip(outcome.waits, outcome.services, strict=True)
            ],
            dtype=float,
        )

    def count(self, tier: str | None = None) -> int:
        return sum(len(outcome.waits) for outcome in self._select(tier, None))


def offered_load(classes: Sequence[StudyClass]) -> float:
    """Workers' worth of work arriving: sum of per-second rate x mean service time."""
    return sum(c.per_hour / 3600.0 * c.service.mean for c in classes)


def simulate(
    classes: Sequence[StudyClass],
    workers: int,
    *,
    hours: float = 200.0,
    warmup_hours: float = 2.0,
    seed: int = 1,
    fixed_seconds: float = 0.0,
) -> SimulationResult:
    """Run the queue for ``warmup_hours + hours`` at the peak; studies arriving in the warm-up
    are served but not counted (the queue starts empty, the peak does not)."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    rng = random.Random(seed)
    env = simpy.Environment()
    pool = simpy.PriorityResource(env, capacity=workers)
    warmup = warmup_hours * 3600.0
    end = warmup + hours * 3600.0
    outcomes = tuple(ClassOutcome(c) for c in classes)
    busy = [0.0]

    def study(outcome: ClassOutcome, service: float) -> simpy.events.ProcessGenerator:
        arrived = env.now
        with pool.request(priority=outcome.study_class.priority) as granted:
            yield granted
            started = env.now
            yield env.timeout(service)
        if arrived >= warmup:
            outcome.waits.append(started - arrived)
            outcome.services.append(service)
        busy[0] += max(0.0, min(env.now, end) - max(started, warmup))

    def arrivals(outcome: ClassOutcome) -> simpy.events.ProcessGenerator:
        rate = outcome.study_class.per_hour / 3600.0
        if rate <= 0:
            return
        while True:
            yield env.timeout(rng.expovariate(rate))
            if env.now >= end:
                return
            env.process(study(outcome, outcome.study_class.service.sample(rng)))

    for outcome in outcomes:
        env.process(arrivals(outcome))
    env.run()  # until the last counted study is served
    return SimulationResult(
        workers=workers,
        hours=hours,
        outcomes=outcomes,
        busy_fraction=busy[0] / (workers * (end - warmup)),
        fixed_seconds=fixed_seconds,
    )
