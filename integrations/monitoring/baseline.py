"""The escalation-rate baseline from the acceptance record (I/O: reads one JSON file).

The seam between the acceptance suite and monitoring: ``[monitoring] acceptance_record``
names the suite's ``acceptance.json``; :func:`acceptance_baseline` reads the escalation rate
per modality from it. It understands, in this order:

1. an explicit table ``"escalation_baseline": {"CT": {"studies": 4, "escalated": 1}, ...}``
   (or ``{"CT": 0.25}``, a rate);
2. otherwise the per-study results ``"studies": [{"modality": "CT", "tier": "Critical"}, ...]``
   (the observed tier: ``observed_tier``, ``tier`` or ``urgency``): a study counts as
   escalated when its observed tier is Critical.

A rate of 0 (no Critical study of that modality) is no baseline: a relative divergence from
0 is undefined, and the historical rate covers that modality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from integrations.errors import ConfigError

TIER_KEYS = ("observed_tier", "tier", "urgency")


def _rate(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        studies = value.get("studies")
        escalated = value.get("escalated")
        if isinstance(studies, int) and isinstance(escalated, int) and studies > 0:
            return escalated / studies
        if isinstance(value.get("rate"), int | float):
            return float(value["rate"])
    return None


def baseline_from_record(record: dict[str, Any]) -> dict[str, float]:
    """Modality -> escalation rate (> 0) from a parsed acceptance record."""
    rates: dict[str, float] = {}
    table = record.get("escalation_baseline")
    if isinstance(table, dict):
        for modality, value in table.items():
            rate = _rate(value)
            if rate is not None:
                rates[str(modality).upper()] = rate
    else:
        totals: dict[str, list[int]] = {}
        for study in record.get("studies") or ():
            if not isinstance(study, dict) or not study.get("modality"):
                continue
            tier = next((study[key] for key in TIER_KEYS if study.get(key)), "")
            counts = totals.setdefault(str(study["modality"]).upper(), [0, 0])
            counts[0] += 1
            counts[1] += int(str(tier) == "Critical")
        rates = {modality: escalated / n for modality, (n, escalated) in totals.items() if n}
    return {modality: rate for modality, rate in rates.items() if 0 < rate <= 1}


def acceptance_baseline(path: str | Path) -> dict[str, float]:
    """The escalation rate per modality recorded by the acceptance suite at ``path``
    (empty: no record configured)."""
    if not str(path):
        return {}
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"[monitoring] acceptance_record {path} does not exist: run `pacsflow acceptance"
            " run` first, or leave the setting empty"
        ) from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"[monitoring] acceptance_record {path} is unreadable: {error}") from None
    if not isinstance(record, dict):
        raise ConfigError(f"[monitoring] acceptance_record {path} is not a JSON object")
    if isinstance(record.get("record"), dict) and "signature" in record:
        record = record["record"]  # the suite's signed document: the record inside
    return baseline_from_record(record)
