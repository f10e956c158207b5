"""The capacity planner's input: a site's peak hour by modality, and service times (pure).

A site file (TOML), e.g.::

    threshold_minutes = 10      # Critical result within this long of study close (ED)
    percentile = 95             # ... for this share of Critical studies
    fixed_seconds = 6           # no worker spends it: close detection (quiet period), C-STORE
    overhead_seconds = 1.1      # per study on the worker besides the model (bench service times)
    worker_kind = "CPU"

    [modalities.CT]
    peak_per_hour = 12          # studies in the busiest hour
    critical_share = 0.15       # STAT / ED orders: dispatched first
    urgent_share = 0.35
    analyzer = "head-ct-ich"    # service time from a bench/ JSON for this analyzer ...
    # service_seconds = 8.0     # ... or given: median (and service_p95_seconds)

Service time per modality, first found: given in the file; measured runs from the database
(worker time per study, overhead included); the ``bench/`` JSON row of the modality's analyzer
(model time plus ``overhead_seconds``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from integrations.capacity.planner import DEFAULT_PERCENTILE, DEFAULT_THRESHOLD_SECONDS
from integrations.capacity.simulation import (
    Empirical,
    Exponential,
    LogNormal,
    ServiceTime,
    StudyClass,
)

MIN_MEASURED_RUNS = 5  # fewer measured runs than this: not enough to stand for the modality

_SITE_KEYS = {
    "threshold_minutes",
    "percentile",
    "fixed_seconds",
    "overhead_seconds",
    "worker_kind",
    "max_workers",
    "hours",
    "seed",
    "name",
    "modalities",
}
_MODALITY_KEYS = {
    "peak_per_hour",
    "critical_share",
    "urgent_share",
    "analyzer",
    "service_seconds",
    "service_p95_seconds",
}


class CapacityInputError(ValueError):
    """The site file or the command line asks for something impossible; names the key."""


@dataclass(frozen=True)
class ModalityInput:
    modality: str
    peak_per_hour: float
    critical_share: float = 0.1
    urgent_share: float = 0.3
    analyzer: str = ""
    service_seconds: float | None = None
    service_p95_seconds: float | None = None


@dataclass(frozen=True)
class SiteInput:
    name: str = ""
    threshold_seconds: float = DEFAULT_THRESHOLD_SECONDS
    percentile: float = DEFAULT_PERCENTILE
    fixed_seconds: float = 0.0
    overhead_seconds: float = 0.0
    worker_kind: str = "CPU"
    max_workers: int = 64
    hours: float = 200.0
    seed: int = 1
    modalities: tuple[ModalityInput, ...] = field(default_factory=tuple)


def _number(data: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CapacityInputError(f"{where}{key}: must be a number (got {value!r})")
    return float(value)


def parse_site(data: Mapping[str, Any]) -> SiteInput:
    unknown = sorted(set(data) - _SITE_KEYS)
    if unknown:
        raise CapacityInputError(f"unknown key(s) {unknown}; known: {sorted(_SITE_KEYS)}")
    modalities = []
    for name, entry in (data.get("modalities") or {}).items():
        where = f"modalities.{name}."
        if not isinstance(entry, Mapping):
            raise CapacityInputError(f"modalities.{name}: must be a table")
        extra = sorted(set(entry) - _MODALITY_KEYS)
        if extra:
            raise CapacityInputError(
                f"{where}: unknown key(s) {extra}; known: {sorted(_MODALITY_KEYS)}"
            )
        p95 = entry.get("service_p95_seconds")
        given = entry.get("service_seconds")
        modalities.append(
            ModalityInput(
                modality=str(name).upper(),
                peak_per_hour=_number(entry, "peak_per_hour", where, 0.0),
                critical_share=_number(entry, "critical_share", where, 0.1),
                urgent_share=_number(entry, "urgent_share", where, 0.3),
                analyzer=str(entry.get("analyzer", "")),
                service_seconds=None
                if given is None
                else _number(entry, "service_seconds", where, 0),
                service_p95_seconds=None
                if p95 is None
                else _number(entry, "service_p95_seconds", where, 0),
            )
        )
    site = SiteInput(
        name=str(data.get("name", "")),
        threshold_seconds=60.0
        * _number(data, "threshold_minutes", "", DEFAULT_THRESHOLD_SECONDS / 60),
        percentile=_number(data, "percentile", "", DEFAULT_PERCENTILE),
        fixed_seconds=_number(data, "fixed_seconds", "", 0.0),
        overhead_seconds=_number(data, "overhead_seconds", "", 0.0),
        worker_kind=str(data.get("worker_kind", "CPU")),
        max_workers=int(_number(data, "max_workers", "", 64)),
        hours=_number(data, "hours", "", 200.0),
        seed=int(_number(data, "seed", "", 1)),
        modalities=tuple(modalities),
    )
    validate(site)
    return site


def validate(site: SiteInput) -> None:
    if not 0 < site.percentile < 100:
        raise CapacityInputError("percentile: must be between 0 and 100")
    if site.threshold_seconds <= 0:
        raise CapacityInputError("threshold_minutes: must be positive")
    for m in site.modalities:
        where = f"modalities.{m.modality}."
        if m.peak_per_hour < 0:
            raise CapacityInputError(f"{where}peak_per_hour: must not be negative")
        if not (0 <= m.critical_share <= 1 and 0 <= m.urgent_share <= 1):
            raise CapacityInputError(f"{where}critical_share / urgent_share: must be 0..1")
        if m.critical_share + m.urgent_share > 1:
            raise CapacityInputError(f"{where}critical_share + urgent_share: more than 1")
        if m.service_seconds is not None and m.service_seconds <= 0:
            raise CapacityInputError(f"{where}service_seconds: must be positive")


def with_peaks(
    site: SiteInput, peaks: Mapping[str, float], critical: Mapping[str, float]
) -> SiteInput:
    """The site with command-line peaks (``--peak CT=12``) and Critical shares applied."""
    by_name = {m.modality: m for m in site.modalities}
    for name, value in peaks.items():
        current = by_name.get(name.upper(), ModalityInput(name.upper(), 0.0))
        by_name[name.upper()] = _replace(current, peak_per_hour=value)
    for name, share in critical.items():
        if name.upper() not in by_name:
            raise CapacityInputError(f"--critical-share {name}: no peak for that modality")
        by_name[name.upper()] = _replace(by_name[name.upper()], critical_share=share)
    changed = SiteInput(**{**site.__dict__, "modalities": tuple(by_name.values())})
    validate(changed)
    return changed


def _replace(modality: ModalityInput, **changes: Any) -> ModalityInput:
    return ModalityInput(**{**modality.__dict__, **changes})


@dataclass(frozen=True)
class ResolvedService:
    modality: str
    service: ServiceTime
    source: str  # "site file", "database (n runs)", "bench <file>: <analyzer>"


def resolve_services(
    site: SiteInput,
    measured: Mapping[str, Sequence[float]],
    bench: Mapping[str, tuple[float, float]],
    bench_source: str = "bench",
) -> list[ResolvedService]:
    """Each modality's service time, from the first source that has it."""
    resolved = []
    for m in site.modalities:
        if m.service_seconds is not None:
            service: ServiceTime = (
                LogNormal(m.service_seconds, m.service_p95_seconds)
                if m.service_p95_seconds
                else Exponential(m.service_seconds)
            )
            resolved.append(ResolvedService(m.modality, service, "site file"))
            continue
        runs = list(measured.get(m.modality, ()))
        if len(runs) >= MIN_MEASURED_RUNS:
            resolved.append(
                ResolvedService(m.modality, Empirical(tuple(runs)), f"database ({len(runs)} runs)")
            )
            continue
        if m.analyzer and m.analyzer in bench:
            p50, p95 = bench[m.analyzer]
            overhead = site.overhead_seconds
            resolved.append(
                ResolvedService(
                    m.modality,
                    LogNormal(p50 + overhead, max(p95, p50) + overhead),
                    f"{bench_source}: {m.analyzer} + {overhead:g} s overhead",
                )
            )
            continue
        raise CapacityInputError(
            f"modalities.{m.modality}: no service time: give service_seconds, an analyzer"
            f" present in the bench file, or at least {MIN_MEASURED_RUNS} stored runs"
            f" (found {len(runs)})"
        )
    return resolved


def study_classes(site: SiteInput, services: Sequence[ResolvedService]) -> list[StudyClass]:
    by_modality = {s.modality: s.service for s in services}
    classes = []
    for m in site.modalities:
        routine = max(0.0, 1.0 - m.critical_share - m.urgent_share)
        for tier, share in (
            ("Critical", m.critical_share),
            ("Urgent", m.urgent_share),
            ("Routine", routine),
        ):
            if share > 0 and m.peak_per_hour > 0:
                classes.append(
                    StudyClass(m.modality, tier, m.peak_per_hour * share, by_modality[m.modality])
                )
    return classes
