"""``pacsflow capacity``: workers needed to keep Critical results under the threshold (I/O).

Reads a site's peak studies per hour by modality (``--site FILE`` TOML and/or ``--peak
CT=12``) and measured service times (``--from-database``: the stored runs of this site;
``--bench FILE``: a ``bench/models`` JSON; or given in the site file), simulates the dispatch
queue at the peak for each worker count, and prints queue delay and result time percentiles
per tier and the least number of workers that keeps Critical results under the threshold
(10 minutes, the ED's, by default). ``--plot FILE.png`` draws it; ``--json`` for machines.
See docs/capacity.md for a worked example.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

from integrations.capacity.inputs import (
    CapacityInputError,
    SiteInput,
    parse_site,
    resolve_services,
    study_classes,
    with_peaks,
)
from integrations.capacity.planner import Plan, plan_workers


def _pairs(values: list[str], option: str) -> dict[str, float]:
    found = {}
    for value in values:
        name, _, number = value.partition("=")
        try:
            found[name.strip().upper()] = float(number)
        except ValueError:
            raise CapacityInputError(
                f"{option} {value!r}: write MODALITY=NUMBER, e.g. CT=12"
            ) from None
    return found


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "capacity",
        help="simulate the peak hour: queue delays and the workers needed for Critical results",
    )
    parser.add_argument("--site", type=Path, help="site file (TOML): peaks, shares, service times")
    parser.add_argument("--peak", action="append", default=[], metavar="MOD=N",
                        help="peak studies per hour of a modality (repeatable), e.g. --peak CT=12")  # fmt: skip
    parser.add_argument("--critical-share", action="append", default=[], metavar="MOD=F",
                        help="share of a modality's studies that are Critical (STAT/ED), e.g. CT=0.15")  # fmt: skip
    parser.add_argument(
        "--bench", type=Path, help="bench/models JSON with service times per analyzer"
    )
    parser.add_argument("--device", default="cpu", help="bench rows of this device: cpu or cuda")
    parser.add_argument("--from-database", action="store_true",
                        help="service times from this site's stored runs (pacsflow's database)")  # fmt: skip
    parser.add_argument("--days", type=float, default=30.0, help="stored runs of the last N days")
    parser.add_argument("--threshold-minutes", type=float, help="Critical result deadline (10)")
    parser.add_argument("--percentile", type=float, help="share of Critical within it (95)")
    parser.add_argument("--max-workers", type=int, help="largest worker count tried (64)")
    parser.add_argument("--worker-kind", help="label of a worker: CPU, GPU ...")
    parser.add_argument("--hours", type=float, help="simulated peak hours per worker count (200)")
    parser.add_argument("--plot", type=Path, help="write the plan as a PNG")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(handler=run)


def _site(args: argparse.Namespace) -> SiteInput:
    data = tomllib.loads(args.site.read_text(encoding="utf-8")) if args.site else {}
    overrides = {
        "threshold_minutes": args.threshold_minutes,
        "percentile": args.percentile,
        "max_workers": args.max_workers,
        "worker_kind": args.worker_kind,
        "hours": args.hours,
    }
    data.update({key: value for key, value in overrides.items() if value is not None})
    site = parse_site(data)
    return with_peaks(
        site, _pairs(args.peak, "--peak"), _pairs(args.critical_share, "--critical-share")
    )


def _measured(args: argparse.Namespace) -> dict[str, list[float]]:
    if not args.from_database:
        return {}
    from integrations.capacity.measured import service_times_from_database
    from integrations.db.connection import open_database
    from integrations.settings import load_settings

    database = open_database(load_settings(args.config), migrate_schema=False)
    try:
        return service_times_from_database(database, args.days)
    finally:
        database.close()


def run(args: argparse.Namespace) -> int:
    try:
        site = _site(args)
        if not site.modalities:
            raise CapacityInputError("no modality: give --site FILE or --peak MOD=N")
        bench = {}
        if args.bench:
            from integrations.capacity.measured import service_times_from_bench

            bench = service_times_from_bench(args.bench, args.device)
        services = resolve_services(site, _measured(args), bench, f"bench {args.bench}")
        classes = study_classes(site, services)
        plan = plan_workers(
            classes,
            threshold_seconds=site.threshold_seconds,
            percentile=site.percentile,
            fixed_seconds=site.fixed_seconds,
            max_workers=site.max_workers,
            hours=site.hours,
            seed=site.seed,
            worker_kind=site.worker_kind,
        )
    except (CapacityInputError, OSError, tomllib.TOMLDecodeError) as error:
        print(f"pacsflow capacity: {error}", file=sys.stderr)
        return 2
    if args.plot:
        from integrations.capacity.plot import write_plot

        write_plot(plan, args.plot, site.name)
    if args.json:
        print(json.dumps({"site": site.name, **plan.to_json(),
                          "service_sources": {s.modality: s.source for s in services}}, indent=2))  # fmt: skip
    else:
        print(
            report(
                plan, site, {s.modality: f"{s.service.describe()} ({s.source})" for s in services}
            )
        )
        if args.plot:
            print(f"plot: {args.plot}")
    return 0 if plan.needed is not None else 1


def report(plan: Plan, site: SiteInput, sources: dict[str, str]) -> str:
    p = plan.percentile
    lines = [f"site: {site.name}" if site.name else "site: (unnamed)"]
    for modality in site.modalities:
        lines.append(
            f"  {modality.modality}: {modality.peak_per_hour:g} studies/h at the peak,"
            f" {modality.critical_share:.0%} Critical, {modality.urgent_share:.0%} Urgent;"
            f" service {sources.get(modality.modality, '?')}"
        )
    lines.append(
        f"offered load {plan.offered_load:.2f} {plan.worker_kind} workers; target: p{p:g} of"
        f" Critical results within {plan.threshold_seconds / 60:g} min of study close"
        f" (+{plan.fixed_seconds:g} s no worker spends)"
    )
    header = (
        f"{'workers':>7} {'busy':>5} | {'Critical wait p50/p95/p99 (s)':>30} | "
        f"{'Critical result p' + format(p, 'g'):>19} | {'Urgent wait p95':>15} | "
        f"{'Routine wait p95':>16} | {'M/M/c mean wait':>15} | meets"
    )
    lines += [header, "-" * len(header)]
    for row in plan.rows:
        names = {t.tier: t for t in row.tiers}
        critical = names.get("Critical")
        urgent, routine = names.get("Urgent"), names.get("Routine")
        crit_wait = (
            f"{critical.wait[50.0]:.1f} / {critical.wait[95.0]:.1f} / {critical.wait[99.0]:.1f}"
            if critical else "-"
        )  # fmt: skip
        crit_result = f"{critical.result[p] / 60:.2f} min" if critical else "-"
        lines.append(
            f"{row.workers:>7} {row.utilisation:>5.0%} | {crit_wait:>30} | {crit_result:>19} | "
            f"{(f'{urgent.wait[95.0]:.1f} s' if urgent else '-'):>15} | "
            f"{(f'{routine.wait[95.0]:.1f} s' if routine else '-'):>16} | "
            f"{row.erlang_mean_wait:>13.1f} s | {'yes' if row.meets_target else 'no'}"
        )
    if plan.needed is None:
        lines.append(f"not reached with {site.max_workers} workers: raise --max-workers")
    else:
        lines.append(
            f"needed: {plan.needed} {plan.worker_kind} worker(s) keep p{p:g} of Critical results"
            f" under {plan.threshold_seconds / 60:g} min at this peak"
        )
    return "\n".join(lines)
