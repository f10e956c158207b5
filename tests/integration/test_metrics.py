"""``/metrics`` as a site's Prometheus scrapes it: several pacsflow processes (the node, the
escalation service) in prometheus_client's multiprocess mode, as ``pacsflow serve`` runs them,
plus the engine's state from PostgreSQL; the text parses with prometheus_client's parser."""

from __future__ import annotations

import httpx
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation  # type: ignore[attr-defined]

from deployments.orthanc import free_port
from integrations.metrics import MULTIPROCESS_ENV, prepare_multiprocess_dir
from tests.dicom_samples import study_files
from tests.fix_hl7 import _port_open, wait_until
from tests.fix_orthanc import NODE_AE_TITLE

TOKEN = "metrics-test-token"


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name -> labels -> value, from a parsed scrape."""
    answer = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE_LATEST
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def test_metrics_add_up_the_processes_and_read_the_engine_state(
    pacsflow_process, clean_database_url, tmp_path, database
):
    node_port, service_port = free_port(), free_port()
    storage = tmp_path / "storage"
    metrics_dir = prepare_multiprocess_dir(storage)
    config = {
        "database": {"url": clean_database_url},
        "node": {
            "ae_title": NODE_AE_TITLE,
            "port": node_port,
            "storage_dir": str(storage),
            "allowed_callers": ["PYSCU"],
        },
        "study": {"quiet_seconds": 300},
        "escalation": {"listen_port": service_port},
    }
    env = {MULTIPROCESS_ENV: str(metrics_dir), "PACSFLOW_ESCALATION_API_TOKEN": TOKEN}
    node = pacsflow_process(["node"], config, env)
    service = pacsflow_process(["escalation-service"], config, env)
    wait_until(lambda: _port_open(node_port), 60, "the node listening")
    wait_until(lambda: _port_open(service_port), 60, "the escalation service listening")

    # Two instances stored at the node (another process than the one scraped), one refused.
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node_port, ae_title=NODE_AE_TITLE)
    assert assoc.is_established
    for path in study_files(tmp_path / "in", "metrics-1", count=2):
        assert assoc.send_c_store(path).Status == 0x0000
    assoc.release()
    stranger = AE(ae_title="STRANGER")
    stranger.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
    assert not stranger.associate("127.0.0.1", node_port, ae_title=NODE_AE_TITLE).is_established
    # Engine state in PostgreSQL: a run waiting, a result waiting for the PACS.
    with database.connection() as conn:
        conn.execute(
            "INSERT INTO studies (study_instance_uid, state) VALUES ('1.2.826.0.1.96.1', 'queued')"
        )
        conn.execute(
            "INSERT INTO dispatch (study_instance_uid, generation, reason, queued_at)"
            " VALUES ('1.2.826.0.1.96.1', 1, 'closed', clock_timestamp() - interval '90 seconds')"
        )
        conn.execute(
            "INSERT INTO results_outbox (destination, study_instance_uid, generation,"
            " sop_instance_uid, sop_class_uid, kind, part, path, content_sha256, give_up_at,"
            " created_at) VALUES ('pacs', '1.2.826.0.1.96.1', 1, '1.2.826.0.1.96.1.1',"
            " '1.2.840.10008.5.1.4.1.1.88.34', 'sr', 'report', '/x', 'ab',"
            " clock_timestamp() + interval '1 day', clock_timestamp() - interval '10 minutes')"
        )

    url = f"http://127.0.0.1:{service_port}/metrics"
    samples = wait_until(
        lambda: (
            (found := scrape(url)).get("pacsflow_node_instances_total", {})
            and found["pacsflow_node_associations_rejected_total"].get(())
            and found
        ),
        30,
        "the node's counters in the service's scrape",
    )
    assert samples["pacsflow_node_instances_total"][(("outcome", "stored"),)] == 2
    assert samples["pacsflow_node_associations_rejected_total"][()] == 1
    assert samples["pacsflow_node_store_seconds_count"][()] == 2
    assert samples["pacsflow_interface_drops_total"][(("kind", "association_rejected"),)] == 1
    assert samples["pacsflow_studies"][(("state", "receiving"),)] == 1
    assert samples["pacsflow_studies"][(("state", "queued"),)] == 1
    assert samples["pacsflow_queue_runs"][(("state", "queued"),)] == 1
    assert 90 <= samples["pacsflow_queue_oldest_seconds"][()] < 600
    outbox = (("destination", "pacs"), ("outbox", "results_outbox"))
    assert samples["pacsflow_outbox_pending"][outbox] == 1
    assert 600 <= samples["pacsflow_outbox_oldest_pending_seconds"][outbox] < 1200
    assert samples["pacsflow_escalations"][(("state", "unacknowledged"),)] == 0
    assert samples["pacsflow_escalation_late_total"][()] == 0
    assert samples["pacsflow_database_up"][()] == 1
    assert node.stop() == 0 and service.stop() == 0


def test_a_counter_any_module_defines_is_exposed_beside_the_engine_state(database):
    from prometheus_client import REGISTRY, Counter

    from integrations.metrics import exposition

    injected = Counter("pacsflow_test_faults_injected", "A module's own counter.", ["fault"])
    try:
        injected.labels("pacs_down").inc(3)
        families = {
            f.name: f for f in text_string_to_metric_families(exposition(database).decode())
        }
        (sample,) = [
            s
            for s in families["pacsflow_test_faults_injected"].samples
            if s.name.endswith("_total")
        ]
        assert sample.labels == {"fault": "pacs_down"} and sample.value == 3
        assert families["pacsflow_database_up"].samples[0].value == 1
        assert "pacsflow_outbox_pending" in families and "pacsflow_queue_runs" in families
    finally:
        REGISTRY.unregister(injected)


def test_a_scrape_still_answers_when_the_database_is_down(settings_factory, restartable_postgres):
    import time

    from integrations.db.connection import open_database
    from integrations.metrics import SCRAPE_DATABASE_TIMEOUT_SECONDS, exposition

    database = open_database(settings_factory(database={"url": restartable_postgres.url}))
    try:
        assert b"pacsflow_database_up 1.0" in exposition(database)
        restartable_postgres.stop()
        started = time.monotonic()
        text = exposition(database).decode()
        assert time.monotonic() - started < SCRAPE_DATABASE_TIMEOUT_SECONDS + 5
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["pacsflow_database_up"].samples[0].value == 0
        assert "pacsflow_queue_runs" not in families
    finally:
        database.close()
