"""The go-live acceptance suite against a whole site (`pacsflow serve` in this process) with
real peers: Orthanc as the PACS, the recording MLLP peer as the RIS, the recording SMTP peer
as the on-call inbox, slapd behind the console's roles, the session Prefect server."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest
from prefect.deployments import run_deployment

from deployments.commands.serve import running_site
from deployments.orthanc import free_port
from integrations.acceptance.report import verify_file
from integrations.acceptance.suite import _node_at_pacs, run_acceptance
from integrations.acceptance.truth import GENERATED_CASES, generated_cases
from tests.dciodvfy import verify as dciodvfy
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE, TEST_SCU_AE_TITLE
from tests.fix_slapd import USERS

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSOLE_SECRET = "acceptance-tests-console-secret-0123456789"
ROLE_USERS = {
    "radiologist": "rad",
    "emergency_physician": "erdoc",
    "technologist": "tech",
    "department_head": "head",
    "it_admin": "itadmin",
}
ON_CALL = {
    "people": {
        "surg1": {"name": "Dr Sam Surgeon", "email": "surg1@hospital.test"},
        "stroke1": {"name": "Dr Stan Stroke", "email": "stroke1@hospital.test"},
        "neuro1": {"name": "Dr Nora Neuro", "email": "neuro1@hospital.test"},
    },
    "teams": {
        "surgery": {"channels": ["email"], "on_call": [{"person": "surg1"}]},
        # the stroke team is paged by webhook (the recording HTTP peer), the others by mail
        "stroke": {"channels": ["webhook"], "on_call": [{"person": "stroke1"}]},
        "neurosurgery": {"channels": ["email"], "on_call": [{"person": "neuro1"}]},
    },
}


def _demo_routing() -> list[dict]:
    """The demo site's routing rules (pacsflow.toml): one per analyzer family."""
    return tomllib.loads((REPO_ROOT / "pacsflow.toml").read_text())["routing"]["rules"]


def _keygen(path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "acceptance", "keygen", str(path)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PACSFLOW_CONFIG": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def _verify(path: Path, key: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "deployments.cli",
            "acceptance",
            "verify",
            str(path),
            "--public-key",
            str(key),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PACSFLOW_CONFIG": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def site_settings(
    settings_factory,
    node_port,
    clean_orthanc,
    demo_models_dir,
    running_slapd,
    notify_smtp,
    notify_http,
    make_mllp_peer,
    tmp_path,
    monkeypatch,
):
    ris = make_mllp_peer()
    monkeypatch.setenv("PACSFLOW_ESCALATION__WEBHOOK_SECRET", "acceptance-webhook-secret")
    key = tmp_path / "acceptance-key.pem"
    _keygen(key)
    monkeypatch.setenv("PACSFLOW_CONSOLE_SECRET", CONSOLE_SECRET)
    accounts = {}
    for role, user in ROLE_USERS.items():
        variable = f"PACSFLOW_ACCEPTANCE_{user.upper()}_PASSWORD"
        monkeypatch.setenv(variable, USERS[user][1])
        accounts[role] = {"username": user, "password_env": variable}
    console_port = free_port()
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": node_port, "allowed_callers": [PACS_AE_TITLE]},
        pacs={
            "ae_title": PACS_AE_TITLE,
            "port": clean_orthanc.dicom_port,
            "timeout_seconds": 30,
            # the PACS's API, as doctor reads it; the node's modality id found by its AE title
            "rest_url": clean_orthanc.http_url,
        },
        study={"quiet_seconds": 1.0, "poll_seconds": 0.1},
        routing={"rules": _demo_routing()},
        models={"dir": str(demo_models_dir), "device": "cpu"},
        worker={"count": 1},
        results={"carriers": ["sr", "gsps", "secondary_capture", "segmentation"]},
        worklist={"route": "orm_o01"},
        ris={"host": "127.0.0.1", "port": ris.port, "retry_delays_seconds": [1.0]},
        hl7={"enabled": False},
        emr={"enabled": False},
        escalation={
            **ON_CALL,
            "smtp_host": notify_smtp.host,
            "smtp_port": notify_smtp.port,
            "webhook_url": notify_http.url("/hooks/stroke"),
            "listen_port": free_port(),
            "retry_delays_seconds": [0.5, 1.0],
            "send_timeout_seconds": 2.0,
        },
        console={
            "port": console_port,
            "base_url": f"http://127.0.0.1:{console_port}",
            "cookie_secure": False,
        },
        ldap=running_slapd.ldap_settings(),
        rbac=running_slapd.rbac_settings(),
        acceptance={
            "signing_key_file": str(key),
            "role_accounts": accounts,
            # a site's own choice: results within 90 s of close (the broken RIS fails sooner)
            "results_seconds": 90,
        },
    )
    return settings, ris


def _wait_for_console(url: str, site, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        site.supervisor.check()
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("the console never answered")


def test_generated_cases_are_ten_dciodvfy_clean_studies_with_documented_truth():
    cases = generated_cases()
    assert [case.case for case in cases] == list(GENERATED_CASES)
    tiers = [case.expected_tier.value for case in cases]
    assert (tiers.count("Critical"), tiers.count("Urgent"), tiers.count("Routine")) == (2, 4, 4)
    assert {"DX", "CT", "MR"} <= {case.modality for case in cases}
    problems = {}
    for case in cases:
        assert bool(case.findings) == bool(case.region), case.case
        first_of_series = {str(ds.SeriesInstanceUID): ds for ds in reversed(case.datasets)}
        for dataset in first_of_series.values():  # a strict PACS refuses what dciodvfy does
            buffer = io.BytesIO()
            dataset.save_as(buffer, enforce_file_format=True)
            errors = dciodvfy(buffer.getvalue()).errors
            if errors:
                problems[f"{case.case} {dataset.Modality}"] = errors
    assert problems == {}, problems


def test_the_suite_finds_the_node_at_the_pacs_as_doctor_does(
    settings_factory, clean_orthanc, node_port
):
    def at_pacs(node: dict, **pacs: str) -> tuple[str, str]:
        return _node_at_pacs(
            settings_factory(node=node, pacs={"rest_url": clean_orthanc.http_url, **pacs})
        )

    ours = {"ae_title": NODE_AE_TITLE, "port": node_port}
    assert at_pacs(ours) == ("pacsflow", "")  # Orthanc's modality with the node's AE title
    assert at_pacs(ours, node_modality_id="ai") == ("ai", "")  # configured wins
    unknown, why = at_pacs({"ae_title": "NOBODY", "port": free_port()})
    assert unknown == "" and "no modality with AE title NOBODY" in why
    assert "set [pacs] node_modality_id" in why
    down, why = at_pacs(ours, rest_url=f"http://127.0.0.1:{free_port()}")
    assert down == "" and why.startswith("the PACS's API ([pacs] rest_url) failed: ConnectError")
    # without an API the suite moves by C-MOVE and needs no modality id
    assert _node_at_pacs(settings_factory(node=ours)) == ("", "")


@pytest.mark.slow
@pytest.mark.timeout(900)  # five suite runs and a deployment run on one site; the hang guard only
def test_acceptance_suite_passes_on_a_working_site_and_a_broken_route_fails_its_step(
    site_settings, notify_smtp, notify_http, prefect_api_url, tmp_path
):
    settings, site_ris = site_settings
    with running_site(settings) as site:
        _wait_for_console(str(settings.console.base_url).rstrip("/"), site)
        outcome = run_acceptance(settings, output_dir=tmp_path / "record", progress=print)

        record = outcome.record
        failed = {
            f"{case['case']}/{step['step']}": step["detail"]
            for case in record["cases"]
            for step in case["steps"]
            if not step["passed"]
        }
        assert failed == {}, failed
        assert record["go_live"] == "PASSED"
        assert [case["case"] for case in record["cases"]] == list(GENERATED_CASES)
        for case in record["cases"]:
            assert [step["step"] for step in case["steps"]] == list(record["steps"])
            assert case["found_tier"] == case["expected_tier"], case["case"]
            arrival = case["steps"][0]
            assert arrival["seconds"] is not None and arrival["seconds"] <= 30
        paged = {c["case"]: c["steps"][5]["seconds"] for c in record["cases"]}
        assert paged["A01"] is not None and paged["A01"] <= 60  # by mail
        assert paged["A02"] is not None and paged["A02"] <= 60  # by webhook
        assert notify_http.received("/hooks/stroke")
        assert set(record["versions"]["models"]) >= {"chest-xray", "brain-mri-stroke"}
        assert len(record["site"]["settings_digest"]) == 64
        assert record["site"]["pacs_route"] == "REST"  # through [pacs] rest_url

        # the record: readable HTML and PDF, signed JSON, no patient identifier anywhere
        html = outcome.html_path.read_text()
        assert "Go-live" in html and "A10" in html and "PASSED" in html
        assert outcome.pdf_path.read_bytes().startswith(b"%PDF")
        everything = outcome.json_path.read_text() + html
        for case in generated_cases():
            first = case.datasets[0]
            for identifier in (first.PatientName, first.PatientID, first.AccessionNumber):
                assert str(identifier) not in everything, identifier
        key = Path(settings.acceptance.signing_key_file)
        for path in (outcome.json_path, outcome.html_path, outcome.pdf_path):
            assert verify_file(path, key.read_bytes()).intact, path
            assert _verify(path, key).returncode == 0

        # a tampered record fails verification: a changed step, a changed page
        tampered = tmp_path / "tampered"
        tampered.mkdir()
        document = json.loads(outcome.json_path.read_text())
        document["record"]["cases"][0]["steps"][5]["seconds"] = 1.0
        (tampered / "acceptance.json").write_text(json.dumps(document))
        done = _verify(tampered / "acceptance.json", key)
        assert done.returncode == 1 and "TAMPERED" in done.stdout
        (tampered / "acceptance.json").write_text(outcome.json_path.read_text())
        (tampered / "acceptance.html").write_text(html.replace("A10", "A11"))
        assert _verify(tampered / "acceptance.html", key).returncode == 1

        a01 = record["cases"][0]
        assert "found by C-FIND" in a01["steps"][2]["detail"]
        assert "on the region" in a01["steps"][3]["detail"]

        # a broken route: the RIS is down; only the worklist step fails, which does not block
        # go-live for an Urgent case (A06, a single radiograph: quicker to resend than A03's
        # 200 MR slices)
        site_ris.stop()
        no_ris = run_acceptance(settings, output_dir=tmp_path / "no-ris", only=["A06"])
        assert no_ris.record["failed_steps"] == ["A06/worklist_tier"], no_ris.record
        assert "no RIS message with priority A" in no_ris.record["cases"][0]["steps"][4]["detail"]
        assert no_ris.record["go_live"] == "FAILED"
        site_ris.start()

        # another: the on-call inbox is down; only the Critical case's escalation fails, and
        # that blocks go-live
        notify_smtp.stop()
        broken = run_acceptance(
            settings, output_dir=tmp_path / "broken", only=["A01", "A06"], progress=print
        )
        assert broken.record["failed_steps"] == ["A01/escalation"], broken.record
        assert broken.record["go_live"] == "BLOCKED"
        assert "BLOCKED" in broken.html_path.read_text()
        assert verify_file(broken.json_path, key.read_bytes()).intact

        # a PACS without a REST API: the suite asks it for a C-MOVE to the node, as a modality
        # the PACS knows (never as the node: a move the node originated brings a prior)
        by_move = settings.model_copy(
            update={
                "pacs": settings.pacs.model_copy(update={"rest_url": ""}),
                "acceptance": settings.acceptance.model_copy(
                    update={"calling_ae_title": TEST_SCU_AE_TITLE}
                ),
            }
        )
        moved = run_acceptance(by_move, output_dir=tmp_path / "moved", only=["A07"])
        assert moved.record["site"]["pacs_route"] == "C-MOVE"
        assert moved.record["go_live"] == "PASSED", moved.record["failed_steps"]

        # the same suite as the acceptance-suite deployment the site's Runner serves
        run = run_deployment(
            "acceptance-suite/acceptance-suite",
            parameters={"cases": ["A07"], "output_dir": str(tmp_path / "deployed")},
            timeout=600,
            poll_interval=0.5,
        )
        assert run.state is not None and run.state.is_completed(), run.state
        artifacts = httpx.post(
            f"{prefect_api_url}/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [str(run.id)]}}},
            timeout=10,
        ).json()
        by_key = {artifact["key"]: artifact for artifact in artifacts}
        assert {"acceptance-record", "acceptance-record-steps"} <= set(by_key), artifacts
        assert "acceptance.html" in by_key["acceptance-record"]["data"]
        assert "| A07 |" in by_key["acceptance-record-steps"]["data"]
        shown = json.dumps(artifacts) + json.dumps(run.parameters)
        a07 = generated_cases(["A07"])[0].datasets[0]
        for identifier in (a07.PatientName, a07.PatientID, a07.AccessionNumber):
            assert str(identifier) not in shown
        assert "acceptance.html" in shown
        deployed = json.loads((tmp_path / "deployed" / "acceptance.json").read_text())
        assert deployed["record"]["go_live"] == "PASSED", deployed["record"]["failed_steps"]
