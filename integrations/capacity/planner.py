"""How many workers keep Critical results under the clinical threshold at the peak (pure).

For each worker count from the least that keeps up with the load, the simulation
(``integrations.capacity.simulation``) gives queue delay and result time percentiles per
tier; the plan is the least count whose Critical result time at the chosen percentile (95th
by default) is under the threshold (10 minutes: the ED's), plus one row beyond it to show the
margin. The M/M/c mean wait (Erlang C, exponential service with the same overall mean) is
given beside each row as a sanity check of the simulation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from integrations.capacity.erlang import mean_wait
from integrations.capacity.simulation import TIERS, StudyClass, offered_load, simulate

DEFAULT_THRESHOLD_SECONDS = 600.0  # ED: a Critical result within 10 minutes of study close
DEFAULT_PERCENTILE = 95.0
PERCENTILES = (50.0, 90.0, 95.0, 99.0)


@dataclass(frozen=True)
class TierFigures:
    tier: str
    studies: int
    wait: dict[float, float]  # percentile -> queue delay, seconds
    result: dict[float, float]  # percentile -> result time, seconds
    mean_wait: float


@dataclass(frozen=True)
class PlanRow:
    workers: int
    utilisation: float
    tiers: tuple[TierFigures, ...]
    erlang_mean_wait: float  # M/M/c, all tiers together
    meets_target: bool

    def tier(self, name: str) -> TierFigures:
        return next(t for t in self.tiers if t.tier == name)


@dataclass(frozen=True)
class Plan:
    classes: tuple[StudyClass, ...]
    threshold_seconds: float
    percentile: float
    fixed_seconds: float
    offered_load: float
    rows: tuple[PlanRow, ...]
    needed: int | None  # None: not reached within max_workers
    worker_kind: str

    def to_json(self) -> dict[str, Any]:
        return {
            "worker_kind": self.worker_kind,
            "threshold_seconds": self.threshold_seconds,
            "percentile": self.percentile,
            "fixed_seconds": self.fixed_seconds,
            "offered_load_workers": round(self.offered_load, 4),
            "workers_needed": self.needed,
            "classes": [
                {
                    "modality": c.modality,
                    "tier": c.tier,
                    "per_hour": c.per_hour,
                    "service": c.service.describe(),
                    "mean_service_seconds": round(c.service.mean, 4),
                }
                for c in self.classes
            ],
            "rows": [
                {
                    "workers": row.workers,
                    "utilisation": round(row.utilisation, 4),
                    "meets_target": row.meets_target,
                    "erlang_c_mean_wait_seconds": _finite(row.erlang_mean_wait),
                    "tiers": {
                        t.tier: {
                            "studies": t.studies,
                            "mean_wait_seconds": round(t.mean_wait, 3),
                            "wait_seconds": {f"p{p:g}": round(v, 3) for p, v in t.wait.items()},
                            "result_seconds": {f"p{p:g}": round(v, 3) for p, v in t.result.items()},
                        }
                        for t in row.tiers
                    },
                }
                for row in self.rows
            ],
        }


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 3)


def _figures(values: np.ndarray) -> dict[float, float]:
    if values.size == 0:
        return {p: 0.0 for p in PERCENTILES}
    return {p: float(np.percentile(values, p)) for p in PERCENTILES}


def row_for(
    classes: Sequence[StudyClass],
    workers: int,
    *,
    threshold_seconds: float,
    percentile: float,
    fixed_seconds: float,
    hours: float,
    seed: int,
) -> PlanRow:
    result = simulate(classes, workers, hours=hours, seed=seed, fixed_seconds=fixed_seconds)
    tiers = []
    for tier in TIERS:
        waits = result.waits(tier)
        if waits.size == 0 and not any(c.tier == tier for c in classes):
            continue
        tiers.append(
            TierFigures(
                tier=tier,
                studies=int(waits.size),
                wait=_figures(waits),
                result=_figures(result.result_times(tier)),
                mean_wait=float(waits.mean()) if waits.size else 0.0,
            )
        )
    critical = result.result_times("Critical")
    critical_at = float(np.percentile(critical, percentile)) if critical.size else 0.0
    rate = sum(c.per_hour for c in classes) / 3600.0
    mean_service = offered_load(classes) / rate if rate else 0.0
    erlang = mean_wait(workers, rate, 1.0 / mean_service) if mean_service else 0.0
    return PlanRow(
        workers=workers,
        utilisation=result.busy_fraction,
        tiers=tuple(tiers),
        erlang_mean_wait=erlang,
        meets_target=critical_at <= threshold_seconds,
    )


def plan_workers(
    classes: Sequence[StudyClass],
    *,
    threshold_seconds: float = DEFAULT_THRESHOLD_SECONDS,
    percentile: float = DEFAULT_PERCENTILE,
    fixed_seconds: float = 0.0,
    max_workers: int = 64,
    hours: float = 200.0,
    seed: int = 1,
    worker_kind: str = "CPU",
    min_workers: int | None = None,
) -> Plan:
    """The least worker count meeting the Critical target, with the rows around it."""
    if not classes:
        raise ValueError("no study classes: give the peak studies per hour of a modality")
    load = offered_load(classes)
    first = max(1, math.floor(load) + 1, min_workers or 1)
    rows: list[PlanRow] = []
    needed = None
    for workers in range(first, max_workers + 1):
        row = row_for(
            classes,
            workers,
            threshold_seconds=threshold_seconds,
            percentile=percentile,
            fixed_seconds=fixed_seconds,
            hours=hours,
            seed=seed,
        )
        rows.append(row)
        if needed is None and row.meets_target:
            needed = workers
        if needed is not None and workers >= needed + 1:
            break
    return Plan(
        classes=tuple(classes),
        threshold_seconds=threshold_seconds,
        percentile=percentile,
        fixed_seconds=fixed_seconds,
        offered_load=load,
        rows=tuple(rows),
        needed=needed,
        worker_kind=worker_kind,
    )
