"""The dispatch-queue simulation against M/M/c theory: Erlang C and Cobham's priorities (pure).

Seeded runs long enough that the simulation's sampling error is a few per cent; the
tolerances are set from that, and a wrong worker count, a lost priority or a service time
that is not the one given each moves a figure far outside them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from integrations.capacity.erlang import (
    erlang_c,
    mean_wait,
    priority_mean_waits,
    wait_exceeds,
    wait_percentile,
)
from integrations.capacity.inputs import (
    CapacityInputError,
    parse_site,
    resolve_services,
    study_classes,
)
from integrations.capacity.planner import plan_workers
from integrations.capacity.simulation import Empirical, Exponential, LogNormal, StudyClass, simulate


def test_erlang_c_textbook_values() -> None:
    # a = 2 Erlang on 3 servers: C = 4/9 (the textbook M/M/3 case)
    assert erlang_c(3, 2.0) == pytest.approx(4 / 9)
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 2.0) == 1.0  # at or over capacity everyone waits
    assert mean_wait(1, 0.5, 1.0) == pytest.approx(1.0)  # rho / (mu - lambda)
    assert wait_percentile(1, 0.5, 1.0, 0.95) == pytest.approx(math.log(0.5 / 0.05) / 0.5)


def pooled(classes: list[StudyClass], workers: int, tier: str | None = None) -> np.ndarray:
    """Queue delays of six independent seeded runs: the sampling error of one run at high
    utilisation is near 8 % of the mean wait, of six pooled about 3 %."""
    return np.concatenate(
        [simulate(classes, workers, hours=250, seed=seed).waits(tier) for seed in range(1, 7)]
    )


def test_fifo_m_m_c_matches_erlang_c() -> None:
    """3 workers, exponential 60 s studies, 126 per hour: load 2.1, utilisation 0.7."""
    service, per_hour = 60.0, 126.0
    lam, mu = per_hour / 3600, 1 / service
    classes = [StudyClass("CT", "Routine", per_hour, Exponential(service))]
    assert simulate(classes, 3, hours=250, seed=1).busy_fraction == pytest.approx(0.7, abs=0.02)
    waits = pooled(classes, 3)
    assert waits.size > 150_000
    assert np.mean(waits > 0) == pytest.approx(erlang_c(3, lam / mu), abs=0.015)
    assert waits.mean() == pytest.approx(mean_wait(3, lam, mu), rel=0.08)
    for seconds in (30.0, 120.0):
        assert np.mean(waits > seconds) == pytest.approx(
            wait_exceeds(3, lam, mu, seconds), abs=0.015
        )
    assert np.percentile(waits, 95) == pytest.approx(wait_percentile(3, lam, mu, 0.95), rel=0.08)


def test_critical_first_matches_cobham_non_preemptive_priorities() -> None:
    """2 workers, utilisation 0.8, Critical and Urgent first: each tier's mean wait as Cobham."""
    service = 30.0
    rates = {"Critical": 20.0, "Urgent": 30.0, "Routine": 142.0}  # per hour
    classes = [StudyClass("DX", tier, rate, Exponential(service)) for tier, rate in rates.items()]
    expected = priority_mean_waits(2, [r / 3600 for r in rates.values()], 1 / service)
    measured = {tier: pooled(classes, 2, tier).mean() for tier in rates}
    for tier, theory in zip(rates, expected, strict=True):
        assert measured[tier] == pytest.approx(theory, rel=0.1), tier
    # first come first served would give every tier the same mean wait
    fifo = mean_wait(2, sum(rates.values()) / 3600, 1 / service)
    assert measured["Critical"] < 0.3 * fifo < fifo < measured["Routine"]


def test_result_time_adds_service_and_fixed_delay() -> None:
    study = StudyClass("MR", "Critical", 1.0, Exponential(50.0))
    result = simulate([study], 4, hours=200, seed=3, fixed_seconds=6.0)
    # four workers for one study an hour: nobody waits; result = service + fixed
    assert result.waits().max() == 0.0
    assert result.result_times().mean() == pytest.approx(56.0, rel=0.1)


def test_service_time_distributions() -> None:
    fitted = LogNormal(median=10.0, p95=20.0)
    import random

    rng = random.Random(5)
    draws = np.array([fitted.sample(rng) for _ in range(40_000)])
    assert np.median(draws) == pytest.approx(10.0, rel=0.03)
    assert np.percentile(draws, 95) == pytest.approx(20.0, rel=0.04)
    assert draws.mean() == pytest.approx(fitted.mean, rel=0.03)
    measured = Empirical((1.0, 2.0, 6.0))
    assert {measured.sample(rng) for _ in range(100)} == {1.0, 2.0, 6.0}
    with pytest.raises(ValueError):
        LogNormal(median=10.0, p95=5.0)


def test_the_plan_is_the_least_worker_count_meeting_the_critical_target() -> None:
    # load 2.4 workers of exponential 60 s studies (their own p95 is 180 s); Critical target:
    # p95 of the result time within 240 s
    classes = [
        StudyClass("CT", "Critical", 30.0, Exponential(60.0)),
        StudyClass("CT", "Routine", 114.0, Exponential(60.0)),
    ]
    plan = plan_workers(classes, threshold_seconds=240.0, percentile=95.0, hours=150, seed=2)
    assert plan.rows[0].workers == 3  # the first count that keeps up with 2.4 workers of load
    assert plan.needed is not None
    meets = {row.workers: row.meets_target for row in plan.rows}
    assert not any(meets[w] for w in meets if w < plan.needed)
    assert meets[plan.needed] and plan.rows[-1].workers == plan.needed + 1
    needed_row = next(row for row in plan.rows if row.workers == plan.needed)
    assert needed_row.tier("Critical").result[95.0] <= 240.0
    # the Erlang C column is the same queue without priorities
    assert needed_row.erlang_mean_wait == pytest.approx(
        mean_wait(plan.needed, 144 / 3600, 1 / 60), rel=1e-9
    )


def test_site_file_shares_and_service_sources() -> None:
    site = parse_site(
        {
            "threshold_minutes": 10,
            "overhead_seconds": 1.0,
            "modalities": {
                "CT": {
                    "peak_per_hour": 10,
                    "critical_share": 0.2,
                    "urgent_share": 0.3,
                    "analyzer": "head-ct-ich",
                },
                "DX": {"peak_per_hour": 20, "critical_share": 0.05, "urgent_share": 0.25},
                "MR": {"peak_per_hour": 2, "service_seconds": 60, "service_p95_seconds": 80},
            },
        }
    )
    services = resolve_services(
        site, {"DX": [2.0, 2.5, 3.0, 2.2, 2.8]}, {"head-ct-ich": (8.0, 12.0)}, "bench x.json"
    )
    sources = {s.modality: s.source for s in services}
    assert sources == {
        "CT": "bench x.json: head-ct-ich + 1 s overhead",
        "DX": "database (5 runs)",
        "MR": "site file",
    }
    ct = next(s.service for s in services if s.modality == "CT")
    assert isinstance(ct, LogNormal) and (ct.median, ct.p95) == (9.0, 13.0)
    classes = {(c.modality, c.tier): c.per_hour for c in study_classes(site, services)}
    assert classes[("CT", "Critical")] == pytest.approx(2.0)
    assert classes[("CT", "Routine")] == pytest.approx(5.0)
    assert classes[("DX", "Urgent")] == pytest.approx(5.0)
    with pytest.raises(CapacityInputError, match="unknown key"):
        parse_site({"treshold_minutes": 10})
    with pytest.raises(CapacityInputError, match="more than 1"):
        parse_site(
            {"modalities": {"CT": {"peak_per_hour": 1, "critical_share": 0.8, "urgent_share": 0.5}}}
        )
    with pytest.raises(CapacityInputError, match="no service time"):
        resolve_services(parse_site({"modalities": {"US": {"peak_per_hour": 3}}}), {}, {})
