"""SAML 2.0 sign-on round trip against a local pysaml2 IdP (signed with xmlsec1): metadata,
SP-initiated login, a signed assertion with the group attribute mapped to roles; an unsigned
assertion and a person in no mapped group are refused (I/O)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

if shutil.which("xmlsec1") is None:  # pragma: no cover - Debian package
    pytest.fail("xmlsec1 is not installed (make setup installs it)", pytrace=False)

from saml2 import BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import AUTHN_PASSWORD, NAMEID_FORMAT_PERSISTENT
from saml2.server import Server
from starlette.testclient import TestClient

from integrations.console.app import create_app, session_signer
from tests.fix_slapd import ROLE_GROUPS

IDP = "https://idp.hospital.test/idp"
IDP_SSO = "https://idp.hospital.test/sso"
SP = "https://pacsflow.hospital.test/saml/metadata"
ACS = "https://pacsflow.hospital.test/saml/acs"


def key_pair(folder: Path, name: str) -> tuple[str, str]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(key), str(cert)


def idp_config(folder: Path, sp_metadata: Path | None) -> IdPConfig:
    key, cert = (str(folder / "idp.key"), str(folder / "idp.pem"))
    config = IdPConfig()
    config.load(
        {
            "entityid": IDP,
            "xmlsec_binary": shutil.which("xmlsec1"),
            "key_file": key,
            "cert_file": cert,
            "metadata": {"local": [str(sp_metadata)]} if sp_metadata else {},
            "service": {
                "idp": {
                    "endpoints": {"single_sign_on_service": [(IDP_SSO, BINDING_HTTP_REDIRECT)]},
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                    "policy": {"default": {"lifetime": {"minutes": 5}, "sign_assertion": True}},
                }
            },
        }
    )
    return config


@pytest.fixture
def saml_site(console_site, settings_factory, tmp_path):
    key_pair(tmp_path, "idp")
    sp_key, sp_cert = key_pair(tmp_path, "sp")
    idp_metadata = tmp_path / "idp-metadata.xml"
    idp_metadata.write_text(
        create_metadata_string(None, config=idp_config(tmp_path, None)).decode()
    )
    settings = settings_factory(
        console={"cookie_secure": False},
        ldap=console_site.slapd.ldap_settings(),
        rbac=console_site.slapd.rbac_settings(),
        saml={
            "enabled": True,
            "sp_entity_id": SP,
            "acs_url": ACS,
            "idp_metadata_file": str(idp_metadata),
            "sp_key_file": sp_key,
            "sp_cert_file": sp_cert,
            "group_attribute": "groups",
        },
    )
    client = TestClient(
        create_app(settings, console_site.database, signer=session_signer(settings)),
        base_url="https://pacsflow.hospital.test",
        follow_redirects=False,
    )
    metadata = client.get("/saml/metadata")
    assert metadata.status_code == 200 and ACS in metadata.text and SP in metadata.text
    sp_metadata = tmp_path / "sp-metadata.xml"
    sp_metadata.write_text(metadata.text)
    return client, Server(config=idp_config(tmp_path, sp_metadata))


def idp_answer(client, idp, groups, *, signed=True, next_page="/", tamper=None):
    """Start the login at the console, let the IdP answer, post the answer to the ACS."""
    start = client.get(f"/saml/login?next={next_page}")
    assert start.status_code == 303 and start.headers["location"].startswith(IDP_SSO)
    query = parse_qs(urlsplit(start.headers["location"]).query)
    request = idp.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT).message
    response = idp.create_authn_response(
        {"uid": ["rad"], "displayName": ["Dr Rhea Radiologist"], "groups": groups},
        in_response_to=request.id,
        destination=ACS,
        sp_entity_id=SP,
        userid="rad",
        authn={"class_ref": AUTHN_PASSWORD},
        sign_assertion=signed,
        sign_response=False,
    )
    xml = str(response)
    if tamper:
        assert tamper[0] in xml
        xml = xml.replace(*tamper)
    return client.post(
        "/saml/acs",
        data={
            "SAMLResponse": base64.b64encode(xml.encode()).decode(),
            "RelayState": query["RelayState"][0],
        },
        headers={"Origin": "https://idp.hospital.test"},
    )


def test_saml_round_trip_maps_the_group_attribute_to_roles(saml_site):
    client, idp = saml_site
    answer = idp_answer(client, idp, [ROLE_GROUPS["radiologist"]], next_page="/analytics")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/analytics"
    assert client.get("/api/worklist").status_code == 200
    assert client.get("/api/system").status_code == 403


def test_saml_refuses_an_unsigned_assertion_and_a_person_without_a_role(saml_site):
    client, idp = saml_site
    unsigned = idp_answer(client, idp, [ROLE_GROUPS["radiologist"]], signed=False)
    assert unsigned.status_code == 401
    assert client.get("/api/worklist").status_code == 401
    # a signed assertion changed on the way (radiologist -> IT administrator) is refused
    tampered = idp_answer(
        client,
        idp,
        [ROLE_GROUPS["radiologist"]],
        tamper=(ROLE_GROUPS["radiologist"], ROLE_GROUPS["it_admin"]),
    )
    assert tampered.status_code == 401
    assert client.get("/api/system").status_code == 401
    nobody = idp_answer(client, idp, ["cn=cafeteria,ou=groups,dc=hospital,dc=test"])
    assert nobody.status_code == 403
    assert client.get("/api/worklist").status_code == 401
