"""DiagnosticReports to a real FHIR server process: auth, R4 validity, retries, idempotency."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from integrations.db.connection import open_database
from integrations.emr.enqueue import enqueue_result
from integrations.fhir.client import FhirClient
from integrations.fhir.sender import FhirSender
from tests.emr_samples import adt, result_document, study_facts
from tests.fhir_r4 import validate_r4
from tests.fix_hl7 import wait_until
from tests.integration.emr.helpers import insert_study, msa, running_listener, running_sender

UID = "1.2.826.0.1.3680043.8.498.{}"
MRN_SYSTEM = "http://hospital.example.org/fhir/mrn"


def fhir_settings(base_url: str, **overrides: object) -> dict[str, object]:
    return {
        "enabled": True,
        "base_url": base_url,
        "retry_delays_seconds": [0.2, 0.4, 0.8],
        "retry_jitter": 0.0,
        "timeout_seconds": 2.0,
        "poll_seconds": 0.1,
        "identifier_systems": {"HOSP": MRN_SYSTEM},
        **overrides,
    }


def queue(database, settings, number: int, patient_id: str = "0012345"):
    uid = UID.format(number)
    insert_study(database, uid, patient_id)
    return enqueue_result(
        database,
        settings,
        result_document(study=study_facts(study_instance_uid=uid, patient_id=patient_id)),
    )


def fhir_rows(database) -> list[dict]:
    with database.connection() as conn:
        return conn.execute("SELECT * FROM fhir_outbox ORDER BY id").fetchall()


def check_stored(server, mrn: str) -> dict:
    reports = server.resources("DiagnosticReport")
    observations = {f"Observation/{item['id']}": item for item in server.resources("Observation")}
    devices = {f"Device/{item['id']}": item for item in server.resources("Device")}
    assert len(reports) == 1
    report = reports[0]
    for resource in [report, *observations.values(), *devices.values()]:
        assert validate_r4(resource) == []
    assert report["subject"]["identifier"] == {
        "system": MRN_SYSTEM,
        "value": mrn,
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
        },
    }
    # urn:uuid references were resolved by the transaction to the stored resources
    assert [ref["reference"] in observations for ref in report["result"]] == [True] * 5
    for observation in observations.values():
        assert observation["device"]["reference"] in devices
    return report


def test_bearer_token_delivery_stores_a_valid_report(
    settings_factory, make_fhir_server, monkeypatch
) -> None:
    server = make_fhir_server(auth="bearer", token="s3cret-token")
    monkeypatch.setenv("PACSFLOW_FHIR_TOKEN", "s3cret-token")
    settings = settings_factory(fhir=fhir_settings(server.base_url, auth="bearer"))
    database = open_database(settings)
    queued = queue(database, settings, 1)
    assert queued.fhir_queued and queued.hl7_queued
    sender = FhirSender(database, settings)
    assert sender.drain() == 1
    sender.close()
    row = fhir_rows(database)[0]
    database.close()
    assert row["state"] == "sent" and row["http_status"] == 200
    assert [entry["response"]["status"] for entry in row["response"]["entry"]] == [
        "201 Created"
    ] * 7
    report = check_stored(server, "0012345")
    assert "No clinical context" in report["conclusion"]


def test_report_carries_the_adt_context_and_merged_identity(
    settings_factory, make_fhir_server
) -> None:
    server = make_fhir_server()
    settings = settings_factory(fhir=fhir_settings(server.base_url))
    with running_listener(settings) as site:
        sender_adt = site.sender()
        assert msa(sender_adt.send(adt("A01", "T-1", mrn="55555")))[0] == "AA"
        queue(site.database, settings, 1, patient_id="55555")
        assert msa(sender_adt.send(adt("A40", "M-1", mrn="12345", prior_mrn="55555")))[0] == "AA"
        sender = FhirSender(site.database, settings)
        assert sender.drain() == 1
        sender.close()
    report = check_stored(server, "12345")
    assert "No clinical context" not in report["conclusion"]


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
def test_smart_backend_services_delivery(
    settings_factory, make_fhir_server, monkeypatch, tmp_path: Path, algorithm: str
) -> None:
    key = (
        rsa.generate_private_key(65537, 2048)
        if algorithm == "RS384"
        else ec.generate_private_key(ec.SECP384R1())
    )
    public = tmp_path / "client.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    private = tmp_path / "client.key.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = make_fhir_server(auth="smart", client_id="pacsflow-ai", public_key=public)
    monkeypatch.setenv("PACSFLOW_FHIR_PRIVATE_KEY", str(private))  # a path; PEM text works too
    settings = settings_factory(
        fhir=fhir_settings(
            server.base_url,
            auth="smart-backend",
            client_id="pacsflow-ai",
            signing_algorithm=algorithm,
            key_id="k1",
        )
    )
    database = open_database(settings)
    queue(database, settings, 1)
    queue(database, settings, 2)
    sender = FhirSender(database, settings)
    assert sender.drain() == 2
    sender.close()
    states = [row["state"] for row in fhir_rows(database)]
    database.close()
    assert states == ["sent", "sent"]
    requests = server.requests()
    assert [r["path"] for r in requests if r["method"] == "POST"] == [
        "/auth/token",
        "/fhir",
        "/fhir",
    ]  # token reused
    assert any(r["path"].endswith("smart-configuration") for r in requests)
    assert len(server.resources("DiagnosticReport")) == 2


def test_wrong_credentials_keep_the_report_pending_until_fixed(
    settings_factory, make_fhir_server, monkeypatch
) -> None:
    server = make_fhir_server(auth="bearer", token="right")
    monkeypatch.setenv("PACSFLOW_FHIR_TOKEN", "wrong")
    settings = settings_factory(fhir=fhir_settings(server.base_url, auth="bearer"))
    database = open_database(settings)
    queue(database, settings, 1)
    with running_sender(FhirSender(database, settings)):
        wait_until(lambda: fhir_rows(database)[0]["attempts"] >= 3, 10, "three refused attempts")
        row = fhir_rows(database)[0]
        assert row["state"] == "pending" and "HTTP 401" in row["last_error"]
        monkeypatch.setenv("PACSFLOW_FHIR_TOKEN", "right")
        wait_until(
            lambda: fhir_rows(database)[0]["state"] == "sent", 10, "sent with the right token"
        )
    database.close()
    assert len(server.resources("DiagnosticReport")) == 1


def test_server_errors_and_hangs_are_retried_refusals_fail(
    settings_factory, make_fhir_server
) -> None:
    server = make_fhir_server()
    server.faults([503, "hang", 502])
    settings = settings_factory(fhir=fhir_settings(server.base_url))
    database = open_database(settings)
    queue(database, settings, 1)
    with running_sender(FhirSender(database, settings)):
        wait_until(
            lambda: fhir_rows(database)[0]["state"] == "sent", 30, "sent after 503, a hang and 502"
        )
        row = fhir_rows(database)[0]
        assert row["attempts"] == 4
        server.faults([422])
        queue(database, settings, 2)
        wait_until(lambda: fhir_rows(database)[1]["state"] == "failed", 10, "422 fails the bundle")
    refused = fhir_rows(database)[1]
    database.close()
    assert refused["http_status"] == 422 and "simulated HTTP 422" in refused["last_error"]
    assert len(server.resources("DiagnosticReport")) == 1


def test_resending_a_delivered_bundle_creates_nothing_new(
    settings_factory, make_fhir_server
) -> None:
    server = make_fhir_server()
    settings = settings_factory(fhir=fhir_settings(server.base_url))
    database = open_database(settings)
    queue(database, settings, 1)
    sender = FhirSender(database, settings)
    sender.drain()
    sender.close()
    bundle = fhir_rows(database)[0]["payload"]
    database.close()
    before = len(server.resources())
    client = FhirClient(settings.fhir)
    again = client.post_transaction(bundle)  # as after a response lost on the way back
    client.close()
    assert [entry["response"]["status"] for entry in again.body["entry"]] == ["200 OK"] * 7
    assert len(server.resources()) == before == 7


def test_the_test_server_refuses_invalid_r4(make_fhir_server, settings_factory) -> None:
    """The endpoint validates what it is sent: a report that is not R4 is a 400."""
    server = make_fhir_server()
    settings = settings_factory(fhir=fhir_settings(server.base_url))
    database = open_database(settings)
    queue(database, settings, 1)
    sender = FhirSender(database, settings)
    item = sender.outbox.claim(30)
    assert item is not None
    bundle = sender.render(item, None)
    bundle["entry"][-1]["resource"]["status"] = "bogus-status"
    outcome, _ = sender.deliver(item, bundle)
    sender.close()
    database.close()
    assert outcome.disposition == "failed" and "bogus-status" in outcome.detail
