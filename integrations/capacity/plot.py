"""The capacity plan as a PNG: result time per tier against the worker count (I/O)."""

from __future__ import annotations

import logging
from pathlib import Path

from integrations.capacity.planner import Plan, PlanRow


def write_plot(plan: Plan, path: Path, title: str = "") -> Path:
    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # font cache lines at INFO
    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    workers = [row.workers for row in plan.rows]
    figure, axis = plt.subplots(figsize=(8, 5), dpi=120)
    styles = {
        "Critical": ("tab:red", "o"),
        "Urgent": ("tab:orange", "s"),
        "Routine": ("tab:blue", "^"),
    }
    p = plan.percentile
    for tier, (colour, marker) in styles.items():
        points = [
            (row.workers, row.tier(tier).result[p] / 60.0) for row in plan.rows if _has(row, tier)
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, marker=marker, color=colour, label=f"{tier} p{p:g}")
    axis.axhline(
        plan.threshold_seconds / 60.0, color="black", linestyle="--", label="Critical threshold"
    )
    if plan.needed is not None:
        axis.axvline(plan.needed, color="tab:green", linestyle=":", label=f"needed: {plan.needed}")
    axis.set_yscale("log")
    axis.set_xlabel(f"{plan.worker_kind} workers")
    axis.set_ylabel("result time after study close (minutes, log scale)")
    axis.set_xticks(workers)
    axis.grid(True, which="both", alpha=0.3)
    axis.set_title(title or f"Result time at the peak (load {plan.offered_load:.2f} workers)")
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _has(row: PlanRow, tier: str) -> bool:
    return any(t.tier == tier for t in row.tiers)
