"""Measured service times for the capacity planner: stored runs, or ``bench/`` JSON (I/O).

Stored runs: a completed dispatch row is one warm worker's time on one study (claimed ->
finished: the Prefect run, every step, result objects, delivery queued), which is what a
worker is busy with. Studies whose dispatch rows carry no times (work-pool route) count the
span of their recorded steps (``study_steps``, written by ``tasks/steps.recorded_step``).

``bench/models`` JSON (``bench_analyzers --json``): per analyzer and device, the median and
95th percentile of the model's time per study.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

NON_IMAGE_MODALITIES = frozenset({"SR", "PR", "SEG", "KO", "OT", "REG", "RWV"})

_DISPATCH_TIMES = """
SELECT s.modalities, extract(epoch FROM d.finished_at - d.started_at)::float AS seconds
  FROM dispatch d JOIN studies s USING (study_instance_uid)
 WHERE d.state = 'completed' AND d.started_at IS NOT NULL AND d.finished_at IS NOT NULL
   AND d.finished_at >= now() - make_interval(days => %s)
"""
_STEP_SPANS = """
SELECT s.modalities,
       extract(epoch FROM max(st.finished_at) - min(st.started_at))::float AS seconds
  FROM study_steps st JOIN studies s USING (study_instance_uid)
 WHERE st.started_at IS NOT NULL AND st.finished_at >= now() - make_interval(days => %s)
   AND NOT EXISTS (SELECT 1 FROM dispatch d WHERE d.study_instance_uid = st.study_instance_uid
                      AND d.state = 'completed' AND d.started_at IS NOT NULL)
 GROUP BY st.study_instance_uid, st.generation, s.modalities
"""


def image_modality(modalities: Iterable[str]) -> str:
    """The study's imaging modality: the first that is not a result object's."""
    for modality in modalities:
        if modality and modality.upper() not in NON_IMAGE_MODALITIES:
            return modality.upper()
    return ""


def service_times_from_database(database: Any, days: float = 30.0) -> dict[str, list[float]]:
    """Seconds of worker time per completed study, by modality, over the last ``days``."""
    found: dict[str, list[float]] = {}
    with database.connection() as conn:
        for query in (_DISPATCH_TIMES, _STEP_SPANS):
            for row in conn.execute(query, (days,)).fetchall():
                modality = image_modality(row["modalities"] or [])
                if modality and row["seconds"] is not None and row["seconds"] >= 0:
                    found.setdefault(modality, []).append(float(row["seconds"]))
    return found


def service_times_from_bench(path: Path, device: str = "cpu") -> dict[str, tuple[float, float]]:
    """Analyzer -> (median, p95) seconds per study on ``device`` from a bench JSON file."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = data.get("results", []) if isinstance(data, dict) else []
    found = {}
    for row in rows:
        if str(row.get("device", "")).startswith(device) and "p50_s" in row:
            found[str(row["analyzer"])] = (
                float(row["p50_s"]),
                float(row.get("p95_s", row["p50_s"])),
            )
    return found
