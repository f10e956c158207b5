"""The cost of a /metrics scrape and of the daily report on a site's month of data (I/O).

Plants 30 days of a 300-bed hospital's load (``--studies-per-day``, default 300: studies,
worklist rows, eight recorded steps each, outbox rows, node events) in a scratch database,
then times :func:`integrations.metrics.exposition` and the report's database part
(:func:`integrations.monitoring.daily.build_report` with no SR to look for in the PACS),
each as a ratio against a reference measured in the same run: one ``count(*)`` over the
study_steps table, the cheapest question that reads the whole month.

    python -m bench.monitoring [--studies-per-day 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg

from bench.common import scratch_database, summary
from integrations.db.connection import open_database
from integrations.db.schema import migrate
from integrations.metrics import exposition
from integrations.monitoring.daily import build_report
from integrations.settings import load_settings

STEPS = (
    "fetch_priors",
    "run_inference:chest-xray",
    "escalate",
    "build_results",
    "store_results",
    "update_worklist",
    "send_oru",
    "build_overlays",
)


def plant(url: str, per_day: int, days: int = 30) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO studies (study_instance_uid, state, modalities, closed_at)"
            " SELECT '1.2.826.0.1.93.' || n, CASE WHEN n %% 97 = 0 THEN 'failed' ELSE 'done' END,"
            " ARRAY[(ARRAY['CR', 'CT', 'MR'])[1 + n %% 3]],"
            " clock_timestamp() - make_interval(secs => n * 86400.0 / %(per_day)s)"
            " FROM generate_series(1, %(total)s) n",
            {"per_day": per_day, "total": per_day * days},
        )
        conn.execute(
            "INSERT INTO worklist (study_instance_uid, modality, tier, status, closed_at,"
            " analysed_at, results_stored_at)"
            " SELECT study_instance_uid, modalities[1],"
            " CASE WHEN random() < 0.05 THEN 'Critical' ELSE 'Routine' END, 'results stored',"
            " closed_at, closed_at + interval '20 seconds', closed_at + interval '40 seconds'"
            " FROM studies"
        )
        conn.execute(
            "INSERT INTO study_steps (study_instance_uid, generation, step, state, started_at,"
            " finished_at) SELECT s.study_instance_uid, 1, step, 'completed', s.closed_at,"
            " s.closed_at + make_interval(secs => 1 + random() * 20)"
            " FROM studies s CROSS JOIN unnest(%(steps)s::text[]) step",
            {"steps": list(STEPS)},
        )
        conn.execute(
            "INSERT INTO hl7_outbox (message_control_id, study_instance_uid, message_type,"
            " payload, state, created_at) SELECT 'B' || study_instance_uid, study_instance_uid,"
            " 'ORU^R01', 'MSH|', 'sent', closed_at FROM studies"
        )
        conn.execute(
            "INSERT INTO node_events (kind, calling_ae_title, peer_host, at)"
            " SELECT 'store_refused', 'MOD' || n %% 5, '10.0.0.' || n %% 5,"
            " clock_timestamp() - make_interval(secs => n * 60)"
            " FROM generate_series(1, %(n)s) n",
            {"n": per_day * days // 20},
        )
        conn.execute("ANALYZE")


def timed(action, repeat: int) -> list[float]:
    durations = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        durations.append(time.perf_counter() - started)
    return durations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies-per-day", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with scratch_database() as url:
        if not url:
            print("no PostgreSQL on 127.0.0.1:5432: nothing measured")
            return 1
        plant(url, args.studies_per_day)
        settings = load_settings(None, search=False, database={"url": url})
        database = open_database(settings, migrate_schema=False)
        try:

            def reference() -> None:
                with database.connection() as conn:
                    conn.execute("SELECT count(*) FROM study_steps").fetchone()

            reference()  # warm the pool and the cache
            base = timed(reference, args.repeat)
            scrape = timed(lambda: exposition(database), args.repeat)
            daily = timed(lambda: build_report(settings, database, 1), args.repeat)
            month = timed(lambda: build_report(settings, database, 30), args.repeat)
        finally:
            database.close()
    reference_median = statistics.median(base)
    print(f"{args.studies_per_day} studies/day for 30 days, {len(STEPS)} steps each")
    print(f"reference count(*) over study_steps: {summary(base)}")
    for name, values in (
        ("/metrics scrape", scrape),
        ("report, 1 day", daily),
        ("report, 30 days", month),
    ):
        ratio = statistics.median(values) / reference_median
        print(f"{name}: {summary(values)}; {ratio:.1f} x the reference")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
