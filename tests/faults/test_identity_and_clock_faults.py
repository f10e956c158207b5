"""Identity and clock faults: a skewed SMART token server clock, a skewed or unreachable SAML
IdP. Deliveries stay queued and are retried; logins fail closed and are audited (I/O)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import saml2.time_util
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from saml2.metadata import create_metadata_string
from starlette.testclient import TestClient

from integrations.console.app import create_app, session_signer
from integrations.db.audit import AuditStore
from integrations.db.connection import open_database
from integrations.fhir.sender import FhirSender
from tests.fix_hl7 import wait_until
from tests.fix_slapd import ROLE_GROUPS
from tests.integration.console import conftest as console_fixtures
from tests.integration.console import test_saml
from tests.integration.emr.helpers import running_sender
from tests.integration.emr.test_fhir_delivery import fhir_rows, fhir_settings, queue

TEN_MINUTES = 600
idp_answer = test_saml.idp_answer
# the SAML console site of tests/integration/console, as fixtures here
console_site = console_fixtures.console_site
saml_site = test_saml.saml_site


def smart_settings(settings_factory, server, monkeypatch, private: Path):
    monkeypatch.setenv("PACSFLOW_FHIR_PRIVATE_KEY", str(private))
    return settings_factory(
        fhir=fhir_settings(
            server.base_url, auth="smart-backend", client_id="pacsflow-ai", key_id="k1"
        )
    )


def smart_key_files(folder: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(65537, 2048)
    public, private = folder / "client.pub.pem", folder / "client.key.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return public, private


def test_token_server_clock_ahead_keeps_the_report_queued_until_the_clock_is_fixed(
    settings_factory, make_fhir_server, monkeypatch, tmp_path: Path
) -> None:
    public, private = smart_key_files(tmp_path)
    server = make_fhir_server(
        auth="smart", client_id="pacsflow-ai", public_key=public, clock_offset=TEN_MINUTES
    )
    settings = smart_settings(settings_factory, server, monkeypatch, private)
    database = open_database(settings)
    queue(database, settings, 1)
    with running_sender(FhirSender(database, settings)) as sender:
        wait_until(lambda: fhir_rows(database)[0]["attempts"] >= 3, 30, "three refused tokens")
        row = fhir_rows(database)[0]
        assert row["state"] == "pending"
        assert "refused the client assertion" in row["last_error"]
        assert "client_assertion expired" in row["last_error"]  # the server's own reason
        assert server.resources("DiagnosticReport") == []
        # The token server's clock is put right: the same queued report goes, once.
        server.stop()
        at = server.options.index("--clock-offset")
        del server.options[at : at + 2]
        server.start()
        wait_until(lambda: fhir_rows(database)[0]["state"] == "sent", 30, "sent after the fix")
        assert sender.drain() == 0
    database.close()
    assert len(server.resources("DiagnosticReport")) == 1
    token_requests = [r for r in server.requests() if r["path"] == "/auth/token"]
    assert [r["status"] for r in token_requests][-1] == 200
    assert all(r["status"] == 400 for r in token_requests[:-1])


@pytest.mark.parametrize("offset_seconds", [-20, 20])
def test_a_small_clock_difference_either_way_is_tolerated(
    settings_factory, make_fhir_server, monkeypatch, tmp_path: Path, offset_seconds: int
) -> None:
    """The assertion is dated a little in the past, so a token server whose clock is slightly
    behind ours still sees exp within its five minutes (and one slightly ahead, not expired)."""
    public, private = smart_key_files(tmp_path)
    server = make_fhir_server(
        auth="smart", client_id="pacsflow-ai", public_key=public, clock_offset=offset_seconds
    )
    settings = smart_settings(settings_factory, server, monkeypatch, private)
    database = open_database(settings)
    queue(database, settings, 1)
    sender = FhirSender(database, settings)
    sender.drain()
    sender.close()
    assert [row["state"] for row in fhir_rows(database)] == ["sent"]
    database.close()
    assert len(server.resources("DiagnosticReport")) == 1


@contextlib.contextmanager
def idp_clock(monkeypatch, offset: timedelta) -> Iterator[None]:
    """pysaml2 (the IdP, in this process) reads the time shifted by ``offset``."""
    real_gmtime = time.gmtime

    class ShiftedDatetime(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return datetime.now(tz) + offset

    with monkeypatch.context() as patch:
        patch.setattr(
            time,
            "gmtime",
            lambda seconds=None: real_gmtime(
                (time.time() if seconds is None else seconds) + offset.total_seconds()
            ),
        )
        patch.setattr(saml2.time_util, "datetime", ShiftedDatetime)
        yield


@pytest.mark.parametrize("minutes", [-10, 10])
def test_an_assertion_from_a_skewed_idp_clock_is_refused_and_audited(
    saml_site,
    console_site,
    monkeypatch,
    minutes: int,
) -> None:
    client, idp = saml_site
    with idp_clock(monkeypatch, timedelta(minutes=minutes)):
        answer = idp_answer(client, idp, [ROLE_GROUPS["radiologist"]])
    assert answer.status_code == 401, answer.text
    assert "outside its validity time" in answer.text  # says why: check the clocks
    assert "set-cookie" not in answer.headers
    assert client.get("/api/worklist").status_code == 401
    (refused,) = AuditStore(console_site.database).search(kind="login_failed")
    assert refused.outcome == 4
    record = AuditStore(console_site.database).message(refused.id)
    assert record is not None and "outside its validity time" in record[0]


@pytest.mark.parametrize("seconds", [-30, 30])
def test_an_idp_clock_half_a_minute_off_still_signs_on(
    saml_site, monkeypatch, seconds: int
) -> None:
    client, idp = saml_site
    with idp_clock(monkeypatch, timedelta(seconds=seconds)):
        answer = idp_answer(client, idp, [ROLE_GROUPS["radiologist"]])
    assert answer.status_code == 303, answer.text
    assert client.get("/api/worklist").status_code == 200


def test_idp_metadata_that_cannot_be_loaded_refuses_sign_on_clearly(
    console_site, settings_factory, tmp_path: Path
) -> None:
    """The console still starts; SSO says why it cannot sign anyone on, audits each refusal,
    creates no session, and works once the metadata is there (no restart)."""
    test_saml.key_pair(tmp_path, "idp")
    idp_metadata = tmp_path / "idp-metadata.xml"  # not there yet
    settings = settings_factory(
        console={"cookie_secure": False},
        ldap=console_site.slapd.ldap_settings(),
        rbac=console_site.slapd.rbac_settings(),
        saml={
            "enabled": True,
            "sp_entity_id": test_saml.SP,
            "acs_url": test_saml.ACS,
            "idp_metadata_file": str(idp_metadata),
        },
    )
    client = TestClient(
        create_app(settings, console_site.database, signer=session_signer(settings)),
        base_url="https://pacsflow.hospital.test",
        follow_redirects=False,
    )
    start = client.get("/saml/login?next=/")
    assert start.status_code == 503
    assert "metadata of the identity provider (IdP) cannot be loaded" in start.text
    answer = client.post("/saml/acs", data={"SAMLResponse": "PHg+", "RelayState": "/"})
    assert answer.status_code == 503
    assert "set-cookie" not in start.headers or "Max-Age=0" in start.headers["set-cookie"]
    assert client.get("/api/worklist").status_code == 401
    refused = AuditStore(console_site.database).search(kind="login_failed")
    assert len(refused) == 2 and {record.outcome for record in refused} == {4}
    message = AuditStore(console_site.database).message(refused[0].id)
    assert message is not None and "cannot be loaded" in message[0]

    idp_metadata.write_text(
        create_metadata_string(None, config=test_saml.idp_config(tmp_path, None)).decode()
    )
    start = client.get("/saml/login?next=/")
    assert start.status_code == 303 and start.headers["location"].startswith(test_saml.IDP_SSO)
