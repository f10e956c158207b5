"""``pacsflow doctor`` against real peers: one all-green site, then each peer broken in turn.

The site: the session Orthanc (its REST API configured), the node running on the port Orthanc
knows, slapd, the recording MLLP peers as EMR and RIS, pacsflow's own ADT listener, a FHIR
server, a TCP syslog collector, the test PostgreSQL and the demo model packages.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deployments.orthanc import Modality, OrthancConfig, OrthancProcess, OrthancTls, free_port
from integrations.db.connection import open_database
from integrations.db.patients import PatientStore
from integrations.doctor.checks import CheckResult, Verdict, exit_status
from integrations.doctor.runner import site_checks
from integrations.emr.identifiers import MrnRules
from integrations.hl7.listener import AdtListener
from integrations.settings import Settings, load_settings
from tests.fix_hl7 import ROOT, _environment, write_config
from tests.fix_orthanc import NODE_AE_TITLE, OrthancPeer
from tests.site import running_node
from tests.tls_certs import make_pki

Sections = dict[str, dict[str, Any]]


@pytest.fixture
def site(
    tmp_path: Path,
    orthanc: OrthancPeer,
    running_slapd,
    make_mllp_peer,
    make_fhir_server,
    make_syslog_collector,
    clean_database_url: str,
    demo_models_dir: Path,
) -> Sections:
    """Every section of a healthy site, as TOML-ready values."""
    emr, ris = make_mllp_peer(), make_mllp_peer()
    fhir = make_fhir_server()
    syslog = make_syslog_collector("tcp")
    return {
        "node": {
            "ae_title": NODE_AE_TITLE,
            "port": orthanc.node_port,
            "storage_dir": str(tmp_path / "storage"),
            "allowed_callers": [orthanc.ae_title],
        },
        "pacs": {
            "ae_title": orthanc.ae_title,
            "port": orthanc.dicom_port,
            "rest_url": orthanc.http_url,
            "timeout_seconds": 10,
        },
        "database": {"url": clean_database_url},
        "models": {"dir": str(demo_models_dir), "allow_non_clinical": True},
        "routing": {"rules": [{"name": "chest", "modality": ["DX"], "analyzers": ["chest-xray"]}]},
        "hl7": {"port": free_port()},
        "emr": {"port": emr.port, "connect_timeout_seconds": 5},
        "ris": {"port": ris.port, "connect_timeout_seconds": 5},
        "worklist": {"route": "orm_o01"},
        "fhir": {"enabled": True, "base_url": fhir.base_url},
        "ldap": running_slapd.ldap_settings(),
        "rbac": running_slapd.rbac_settings(),
        "audit": {
            "syslog_host": "127.0.0.1",
            "syslog_port": syslog.port,
            "syslog_transport": "tcp",
        },
    }


def settings_of(sections: Sections, **changes: dict[str, Any]) -> Settings:
    merged = {
        name: {**sections.get(name, {}), **changes.get(name, {})} for name in {*sections, *changes}
    }
    return load_settings(None, search=False, **merged)


@pytest.fixture
def running_site(site: Sections) -> Iterator[Callable[..., list[CheckResult]]]:
    """The node and the ADT listener up; returns ``check(**section_changes)``."""
    settings = settings_of(site)
    database = open_database(settings)
    listener = AdtListener(
        settings.hl7, PatientStore(database, MrnRules.from_settings(settings.mrn))
    ).server()
    listener.start()
    try:
        with running_node(settings, close_studies=False):
            yield lambda **changes: site_checks(settings_of(site, **changes))
    finally:
        listener.stop()
        database.close()


def by_check(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.check: result for result in results}


def run_cli(config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", "--config", str(config), "doctor", *options],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_healthy_site_passes_every_check_and_exits_0(
    running_site, site: Sections, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "site.toml", site)
    done = run_cli(config)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    verdicts = {line.split()[0] for line in lines[:-1]}
    assert verdicts <= {"PASS", "WARN"}, done.stdout
    for expected in (
        "PASS  configuration valid",
        f"PASS  node port 127.0.0.1:{site['node']['port']}: node PACSFLOW listening",
        "PASS  C-ECHO node -> PACS ORTHANC",
        "PASS  C-ECHO PACS -> node PACSFLOW",
        "PASS  node AE PACSFLOW registered at the PACS: as 'pacsflow'",
        "PASS  C-FIND on the archive",
        "PASS  HL7 ADT listener",
        "PASS  EMR MLLP receiver",
        "PASS  RIS MLLP receiver",
        "PASS  FHIR server",
        "PASS  LDAP bind and group lookup",
        "PASS  audit syslog tcp://",
        "PASS  database schema current",
        "PASS  free disk in",
    ):
        assert any(line.startswith(expected) for line in lines), (expected, done.stdout)
    # the demo package is verified, but says what it is: not for patients
    model = next(line for line in lines if "model package chest-xray" in line)
    assert model.startswith("WARN") and "NOT FOR CLINICAL USE" in model and "fix:" in model

    machine = json.loads(run_cli(config, "--json").stdout)
    assert machine["ok"] is True
    assert {check["check"] for check in machine["checks"]} >= {
        "config", "node-port", "pacs-echo", "pacs-to-node-echo", "node-registered",
        "archive-find", "hl7-listener", "emr-mllp", "ris-mllp", "fhir", "ldap", "syslog",
        "database-schema", "model:chest-xray", "disk",
    }  # fmt: skip


def test_a_wrong_pacs_ae_title_is_named_with_the_fix(running_site) -> None:
    """Orthanc by default does not check the called AE title: its API tells the truth."""
    results = running_site(pacs={"ae_title": "HOSP_PACS"})
    echo = by_check(results)["pacs-echo"]
    assert echo.verdict is Verdict.FAIL
    assert "the PACS calls itself ORTHANC" in echo.value
    assert echo.fix == 'set [pacs] ae_title = "ORTHANC"'
    assert exit_status(results) == 1


def test_a_strict_pacs_rejecting_the_called_ae_title_is_read_from_its_answer(
    start_orthanc, site: Sections
) -> None:
    strict = start_orthanc(check_called_aet=True)
    results = site_checks(
        settings_of(site, pacs={"ae_title": "HOSP_PACS", "port": strict.dicom_port, "rest_url": ""})
    )
    echo = by_check(results)["pacs-echo"]
    assert echo.verdict is Verdict.FAIL
    assert "A-ASSOCIATE-RJ 'called AE title not recognised'" in echo.value
    assert "set [pacs] ae_title to the PACS's own AE title" in echo.fix


def test_a_node_ae_title_the_pacs_does_not_know(running_site, orthanc: OrthancPeer) -> None:
    unknown_port = free_port()
    results = by_check(running_site(node={"ae_title": "NEWNODE", "port": unknown_port}))
    registered = results["node-registered"]
    assert registered.verdict is Verdict.FAIL
    assert registered.fix == f"register AE NEWNODE at 127.0.0.1:{unknown_port} in the PACS"
    # Orthanc refuses queries from an AE title it does not know: priors would find nothing
    find = results["archive-find"]
    assert find.verdict is Verdict.FAIL and "allow C-FIND" in find.fix


def test_the_pacs_has_our_address_under_another_ae_title(running_site, orthanc) -> None:
    results = by_check(running_site(node={"ae_title": "PACSFLOW2"}))
    registered = results["node-registered"]
    assert registered.verdict is Verdict.FAIL
    assert f"registered as AE {NODE_AE_TITLE}" in registered.value
    assert 'set [node] ae_title = "PACSFLOW"' in registered.fix


def test_the_pacs_down(running_site) -> None:
    dead = free_port()
    results = by_check(
        running_site(pacs={"port": dead, "rest_url": f"http://127.0.0.1:{free_port()}"})
    )
    echo = results["pacs-echo"]
    assert echo.verdict is Verdict.FAIL
    assert echo.value == "no association: connection refused"
    assert echo.fix == (
        f"start the PACS or correct [pacs] host/port: nothing DICOM answers at 127.0.0.1:{dead}"
    )
    assert results["archive-find"].verdict is Verdict.FAIL
    assert results["pacs-to-node-echo"].verdict is Verdict.FAIL
    assert "correct [pacs] rest_url" in results["pacs-to-node-echo"].fix


def test_the_directory_down(running_site, running_slapd) -> None:
    running_slapd.stop()
    try:
        ldap_line = by_check(running_site())["ldap"]
    finally:
        running_slapd.start()
    assert ldap_line.verdict is Verdict.FAIL
    assert "cannot be reached" in ldap_line.value
    assert ldap_line.fix.startswith("start the directory or correct [ldap] url")


def test_a_full_disk_by_the_watermark(running_site) -> None:
    disk = by_check(running_site(storage={"min_free_percent": 99.99}))["disk"]
    assert disk.verdict is Verdict.FAIL
    assert "watermark 99.99 %" in disk.value
    assert disk.fix.startswith("free at least ") and "GiB in " in disk.fix


def test_the_node_not_running_and_a_broken_config(site: Sections, tmp_path: Path) -> None:
    results = by_check(site_checks(settings_of(site)))
    assert results["node-port"].verdict is Verdict.PASS
    assert results["node-port"].value == "free (the node is not running)"
    back = results["pacs-to-node-echo"]
    assert back.verdict is Verdict.FAIL and back.fix.startswith("start the node")

    broken = write_config(tmp_path / "broken.toml", {**site, "pacs": {"ae_titel": "X"}})
    done = run_cli(broken)
    assert done.returncode == 1
    assert done.stdout.startswith("FAIL  configuration valid:")
    assert "pacs.ae_titel: unknown key; did you mean 'pacs.ae_title'?" in done.stdout


def test_a_pacs_reached_over_dicom_tls(tmp_path: Path, site: Sections) -> None:
    """[pacs] tls: the doctor's C-ECHO and C-FIND use TLS as the SCU does; a PACS whose
    certificate the node does not trust is named by the TLS reason, never spoken to in clear."""
    pki = make_pki(tmp_path / "pki")
    node_tls_port = free_port()
    orthanc = OrthancProcess(
        OrthancConfig(
            storage_dir=tmp_path / "tls-orthanc",
            ae_title="TLSPACS",
            dicom_port=free_port(),
            http_port=free_port(),
            modalities=[
                Modality("pacsflow", NODE_AE_TITLE, "127.0.0.1", node_tls_port, use_tls=True),
                # a registration of the node as Orthanc's DicomModalities has to know it
                Modality("pacsflow-plain", NODE_AE_TITLE, "127.0.0.1", site["node"]["port"]),
            ],
            tls=OrthancTls(pki.pacs.cert, pki.pacs.key, pki.ca, remote_certificate_required=True),
        )
    )
    orthanc.start()
    try:
        tls = {
            "ae_title": "TLSPACS",
            "port": orthanc.config.dicom_port,
            "rest_url": orthanc.url,
            "tls": True,
            "tls_ca": str(pki.ca),
            "tls_cert": str(pki.node.cert),
            "tls_key": str(pki.node.key),
        }
        node_tls = {
            "tls_port": node_tls_port,
            "tls_cert": str(pki.node.cert),
            "tls_key": str(pki.node.key),
            "tls_ca": str(pki.ca),
            "allowed_callers": ["TLSPACS"],
        }
        good = by_check(site_checks(settings_of(site, pacs=tls, node=node_tls)))
        assert good["pacs-echo"].verdict is Verdict.PASS, good["pacs-echo"]
        assert good["archive-find"].verdict is Verdict.PASS, good["archive-find"]
        assert good["node-registered"].verdict is Verdict.PASS, good["node-registered"]

        untrusted = {**tls, "tls_ca": str(make_pki(tmp_path / "other-pki").ca)}
        bad = by_check(site_checks(settings_of(site, pacs=untrusted, node=node_tls)))
        assert bad["pacs-echo"].verdict is Verdict.FAIL
        echo = bad["pacs-echo"]
        assert echo.value.startswith("no association: TLS: certificate not trusted")
        assert echo.fix.startswith("the TLS handshake with the PACS failed")
        assert "[pacs] tls_ca" in echo.fix
    finally:
        orthanc.stop()


def test_an_old_config_naming_the_pacs_api_under_acceptance_says_where_it_moved(
    running_site, site: Sections, orthanc: OrthancPeer, tmp_path: Path
) -> None:
    old = {
        **site,
        "pacs": {**site["pacs"], "rest_url": ""},
        "acceptance": {"pacs_rest_url": orthanc.http_url, "pacs_node_alias": "pacsflow"},
    }
    done = run_cli(write_config(tmp_path / "old.toml", old))
    assert done.returncode == 1
    assert done.stdout.startswith("FAIL  configuration valid:")
    assert "acceptance.pacs_rest_url: unknown key; moved to [pacs] rest_url" in done.stdout
    assert (
        "acceptance.pacs_node_alias: unknown key; moved to [pacs] node_modality_id" in done.stdout
    )

    # moved: the one PACS API, with the PACS's name for the node, serves doctor
    results = by_check(
        running_site(pacs={"rest_url": orthanc.http_url, "node_modality_id": "pacsflow"})
    )
    assert results["pacs-to-node-echo"].verdict is Verdict.PASS
    assert results["node-registered"].verdict is Verdict.PASS
