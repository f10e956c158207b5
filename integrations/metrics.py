"""pacsflow's Prometheus metrics: node, queue, steps, outboxes, escalation (I/O).

Two kinds, each where its truth lives:

- **State, read from PostgreSQL at every scrape** (:class:`DatabaseCollector`): the dispatch
  queue, studies by state, every outbox's backlog and oldest message, escalations by state
  and their latency, interface drops, step latency percentiles and the escalation rate per
  modality. PostgreSQL already holds this for every process and every host (warm workers,
  work-pool workers elsewhere), it survives restarts, and one scrape of one process sees it
  whole; the queries are the monitoring report's (:mod:`integrations.monitoring.collect`).
- **Events counted in the process where they happen** (module-level Counters and Histograms
  on prometheus_client's default registry): C-STORE outcomes and handling time at the node,
  refusals at the HL7 listener, step durations, and whatever other modules define (fault injection counters ...).
  ``pacsflow serve`` runs them in several processes, so it sets ``PROMETHEUS_MULTIPROC_DIR``
  (``<storage_dir>/metrics``, emptied at start) for its children: prometheus_client then
  keeps each process's values in that folder, and :func:`exposition` adds them up.

``/metrics`` (the escalation service, same URL and access as before) answers
:func:`exposition`: the default registry (or, under serve, every process's values) plus the
database collector. No metric has a patient, study or person as a label.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
SCRAPE_DATABASE_TIMEOUT_SECONDS = 5.0
RATE_WINDOW_DAYS = 1  # the escalation rate and step percentiles cover the last 24 hours
CONTENT_TYPE = CONTENT_TYPE_LATEST

# The node: what became of every C-STORE, and associations refused (NodeCounters names).
NODE_OUTCOMES = {
    "stored": "stored",
    "duplicates": "duplicate",
    "changed_duplicates": "changed_duplicate",
    "own_objects": "own_object",
    "refused": "refused",
}
NODE_INSTANCES = Counter(
    "pacsflow_node_instances",
    "C-STORE requests the DICOM node answered, by outcome.",
    ["outcome"],
)
NODE_ASSOCIATIONS_REJECTED = Counter(
    "pacsflow_node_associations_rejected",
    "Associations the DICOM node rejected (unknown caller or called AE title, limits).",
)
NODE_STORE_SECONDS = Histogram(
    "pacsflow_node_store_seconds",
    "Time to land, record and answer one C-STORE at the node.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
# The HL7 listener: connections it closed before or while reading, senders it refused (AR).
HL7_CONNECTIONS_REFUSED = Counter(
    "pacsflow_hl7_connections_refused",
    "MLLP connections the HL7 listener refused or closed, by reason.",
    ["reason"],
)
HL7_MESSAGES_REFUSED = Counter(
    "pacsflow_hl7_messages_refused",
    "HL7 messages answered AR because the sender is not in [hl7] allowed_senders.",
)
STEP_SECONDS = Histogram(
    "pacsflow_step_seconds",
    "Duration of each recorded step of a study (process-study steps, result delivery).",
    ["step", "state"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0),
)


def node_event(counter_name: str) -> None:
    """Count one of the node's events (the :class:`NodeCounters` field it increments)."""
    if counter_name == "rejected_associations":
        NODE_ASSOCIATIONS_REJECTED.inc()
    elif counter_name in NODE_OUTCOMES:
        NODE_INSTANCES.labels(NODE_OUTCOMES[counter_name]).inc()


def step_recorded(step: str, state: str, started_at: datetime | None) -> None:
    """Observe a step's duration when its outcome is recorded (analyzer names are bounded
    by the routing rules; no study is a label)."""
    if started_at is None or started_at.tzinfo is None or state not in ("completed", "failed"):
        return
    seconds = (datetime.now(UTC) - started_at).total_seconds()
    if seconds >= 0:
        STEP_SECONDS.labels(step, state).observe(seconds)


def prepare_multiprocess_dir(storage_dir: Path) -> Path:
    """The folder ``pacsflow serve``'s children keep their values in, emptied (values from
    an earlier run of the site must not add to this one's)."""
    directory = storage_dir / "metrics"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return directory


def process_exited(pid: int, directory: str | None) -> None:
    """Forget an exited child's live gauges (its counters and histograms still count)."""
    if directory and Path(directory).is_dir():
        multiprocess.mark_process_dead(pid, directory)


def _summary(name: str, documentation: str, row: dict[str, Any]) -> Metric:
    """A Prometheus summary with quantiles (prometheus_client's own Summary has none)."""
    metric = Metric(name, documentation, "summary")
    for quantile, key in (("0.5", "p50"), ("0.95", "p95")):
        value = row.get(key)
        metric.add_sample(
            name, {"quantile": quantile}, float(value) if value is not None else float("nan")
        )
    metric.add_sample(f"{name}_sum", {}, float(row.get("seconds_sum") or 0))
    metric.add_sample(f"{name}_count", {}, float(row.get("measured") or 0))
    return metric


class DatabaseCollector(Collector):
    """The engine's state from PostgreSQL, read at every scrape (a handful of queries)."""

    def __init__(self, database: Any) -> None:
        self.database = database

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        except Exception as error:  # a scrape must still answer (and say the database is down)
            log.warning("metrics: database not readable: %s", error)
            up = GaugeMetricFamily("pacsflow_database_up", "PostgreSQL answered the scrape.")
            up.add_metric([], 0)
            yield up

    def _collect(self) -> Iterator[Metric]:
        from integrations.db.escalations import EscalationStore
        from integrations.monitoring import collect

        now = datetime.now(UTC)
        since = now - timedelta(days=RATE_WINDOW_DAYS)
        metrics: list[Metric] = []

        queue = GaugeMetricFamily(
            "pacsflow_queue_runs", "process-study runs waiting or running.", labels=["state"]
        )
        oldest = GaugeMetricFamily(
            "pacsflow_queue_oldest_seconds", "Age of the oldest queued run.", labels=[]
        )
        studies = GaugeMetricFamily("pacsflow_studies", "Studies by state.", labels=["state"])
        # A database that is down answers database_up 0 within a scrape's time, not the
        # pool's 30-second wait.
        with self.database.pool.connection(timeout=SCRAPE_DATABASE_TIMEOUT_SECONDS) as conn:
            counts = {
                row["state"]: row
                for row in conn.execute(
                    "SELECT state, count(*) AS n, min(queued_at) AS oldest FROM dispatch"
                    " WHERE state IN ('queued', 'running') GROUP BY state"
                ).fetchall()
            }
            for state in ("queued", "running"):
                queue.add_metric([state], int(counts[state]["n"]) if state in counts else 0)
            first = counts.get("queued", {}).get("oldest")
            oldest.add_metric([], (now - first).total_seconds() if first else 0.0)
            by_state = {
                row["state"]: int(row["n"])
                for row in conn.execute(
                    "SELECT state, count(*) AS n FROM studies GROUP BY state"
                ).fetchall()
            }
        for state in ("receiving", "queued", "processing", "done", "failed", "unrouted"):
            studies.add_metric([state], by_state.get(state, 0))
        metrics += [queue, oldest, studies]

        pending = GaugeMetricFamily(
            "pacsflow_outbox_pending",
            "Messages waiting in an outbox.",
            labels=["outbox", "destination"],
        )
        failed = GaugeMetricFamily(
            "pacsflow_outbox_failed",
            "Messages an outbox gave up on (kept for an operator).",
            labels=["outbox", "destination"],
        )
        age = GaugeMetricFamily(
            "pacsflow_outbox_oldest_pending_seconds",
            "Age of the oldest message waiting in an outbox (0 when empty).",
            labels=["outbox", "destination"],
        )
        for backlog in collect.outbox_backlogs(self.database, now):
            labels = [backlog.outbox, backlog.destination]
            pending.add_metric(labels, backlog.pending)
            failed.add_metric(labels, backlog.failed)
            age.add_metric(labels, backlog.oldest_pending_seconds or 0.0)
        metrics += [pending, failed, age]

        drops = CounterMetricFamily(
            "pacsflow_interface_drops",
            "Refused connections, associations, PDUs, instances and HL7 messages.",
            labels=["kind"],
        )
        totals = collect.interface_drop_totals(self.database)
        for kind in (*collect.INTERFACE_DROP_KINDS, "hl7_rejected"):
            drops.add_metric([kind], totals.get(kind, 0))
        metrics.append(drops)

        latency = GaugeMetricFamily(
            "pacsflow_step_latency_seconds",
            "Step duration percentiles over the last 24 hours (study_steps).",
            labels=["step", "quantile"],
        )
        runs = GaugeMetricFamily(
            "pacsflow_step_runs", "Steps finished in the last 24 hours.", labels=["step", "state"]
        )
        for step in collect.step_latencies(self.database, since):
            for quantile, value in (("0.5", step.p50), ("0.95", step.p95), ("0.99", step.p99)):
                if value is not None:
                    latency.add_metric([step.step, quantile], value)
            runs.add_metric([step.step, "completed"], step.count - step.failed)
            runs.add_metric([step.step, "failed"], step.failed)
        metrics += [latency, runs]

        rate = GaugeMetricFamily(
            "pacsflow_escalation_rate",
            "Fraction of studies analysed in the last 24 hours that were Critical, by modality.",
            labels=["modality"],
        )
        analysed = GaugeMetricFamily(
            "pacsflow_studies_analysed",
            "Studies analysed in the last 24 hours, by modality.",
            labels=["modality"],
        )
        for modality, days in collect.daily_escalation_rates(
            self.database, now, RATE_WINDOW_DAYS
        ).items():
            day = days[-1]
            analysed.add_metric([modality], day.studies)
            if day.rate is not None:
                rate.add_metric([modality], day.rate)
        metrics += [rate, analysed]

        summary = EscalationStore(self.database).latency_summary()
        escalations = GaugeMetricFamily(
            "pacsflow_escalations", "Escalations by state.", labels=["state"]
        )
        for state in ("undelivered", "unacknowledged", "acknowledged", "exhausted", "unroutable"):
            escalations.add_metric([state], int(summary[state] or 0))
        late = CounterMetricFamily(
            "pacsflow_escalation_late", "First notifications later than the deadline."
        )
        late.add_metric([], int(summary["late"] or 0))
        metrics += [
            escalations,
            late,
            _summary(
                "pacsflow_escalation_first_notification_seconds",
                "Study close to first notification.",
                summary,
            ),
        ]
        up = GaugeMetricFamily("pacsflow_database_up", "PostgreSQL answered the scrape.")
        up.add_metric([], 1)
        metrics.append(up)
        yield from metrics


class _ProcessMetrics(Collector):
    """This process's default registry, or under ``pacsflow serve`` every process's values."""

    def collect(self) -> Iterator[Metric]:
        directory = os.environ.get(MULTIPROCESS_ENV)
        if directory and Path(directory).is_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)
            yield from registry.collect()
        else:
            yield from REGISTRY.collect()


def exposition(database: Any) -> bytes:
    """The text exposition of every pacsflow metric (Prometheus text format)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProcessMetrics())
    registry.register(DatabaseCollector(database))
    return generate_latest(registry)
