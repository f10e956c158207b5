"""Stroke and aortic dissection through the full chain, with the built-in routes: a head CT
with an ischemic territory pages the stroke on-call, a type A dissection on CT angiography
pages the surgical on-call (Orthanc → node → study close → warm worker → the demo analyzers →
escalate → recording SMTP and webhook peers)."""

from __future__ import annotations

import io
import time

from integrations.db.escalations import EscalationStore
from models.phantoms.aorta import cta_aorta_study
from models.phantoms.stroke import head_ct_stroke_study
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE
from tests.integration.escalation.conftest import escalation_section
from tests.site import running_node, running_worker

DEADLINE_SECONDS = 60.0


def _surgery_hook(server, label: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for hook in server.received("/hooks/surgery"):
            if hook.json()["finding"]["label"] == label:
                return hook
        time.sleep(0.1)
    raise AssertionError(f"no surgery webhook about {label!r}")


def test_stroke_pages_stroke_on_call_and_dissection_pages_surgery(
    settings_factory,
    clean_orthanc,
    prefect_api_url,
    demo_models_dir,
    notify_http,
    notify_smtp,
):
    settings = settings_factory(
        node={
            "ae_title": NODE_AE_TITLE,
            "port": clean_orthanc.node_port,
            "allowed_callers": [PACS_AE_TITLE],
        },
        pacs={"ae_title": PACS_AE_TITLE, "port": clean_orthanc.dicom_port},
        study={"quiet_seconds": 1.0},
        models={"dir": str(demo_models_dir), "device": "cpu"},
        routing={
            "rules": [
                {
                    "name": "head-ct",
                    "modality": ["CT"],
                    "body_part": ["HEAD", "BRAIN"],
                    "analyzers": ["head-ct-stroke"],
                },
                {
                    "name": "cta-aorta",
                    "modality": ["CT"],
                    "body_part": ["CHEST", "AORTA"],
                    "protocol": r"(?i)angio|\bcta\b|aort",
                    "analyzers": ["cta-aortic-dissection"],
                },
            ]
        },
        escalation=escalation_section(notify_http, notify_smtp),  # built-in routes only
    )
    stroke = head_ct_stroke_study(9_700_001, True, accession_number="E2E-STROKE")
    dissection = cta_aorta_study(9_800_001, "A", accession_number="E2E-DISSECT")
    for study in (stroke, dissection):
        for dataset in study.datasets:
            buffer = io.BytesIO()
            dataset.save_as(buffer, enforce_file_format=True)
            clean_orthanc.client.upload(buffer.getvalue())

    with running_node(settings) as site, running_worker(settings):
        for study in (stroke, dissection):
            outcome = clean_orthanc.client.send_study("pacsflow", [study.study_instance_uid])
            assert outcome["FailedInstancesCount"] == 0
        mails = notify_smtp.wait_for("stroke1@hospital.test", timeout=DEADLINE_SECONDS + 60)
        assert any("Acute ischemic stroke" in mail.subject for mail in mails)
        hook = _surgery_hook(notify_http, "Aortic dissection", timeout=DEADLINE_SECONDS + 60)
        assert hook.json()["study"]["study_instance_uid"] == dissection.study_instance_uid
        for study, finding, team, rule in (
            (stroke, "Acute ischemic stroke", "stroke", "default:acute-stroke"),
            (dissection, "Aortic dissection", "surgery", "default:aortic-dissection"),
        ):
            closed = site.store.study(study.study_instance_uid)
            assert closed is not None and closed.closed_at is not None
            deadline = time.monotonic() + 30  # the record notes its first delivery after it
            while True:
                records = [
                    r
                    for r in EscalationStore(site.database).for_study(study.study_instance_uid)
                    if r.finding == finding
                ]
                notified = records and records[0].first_notification_seconds is not None
                if notified or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert len(records) == 1 and records[0].team == team, records
            assert records[0].team_rule == rule, records
            assert records[0].first_notification_seconds is not None
            assert records[0].first_notification_seconds < DEADLINE_SECONDS
    # the stroke was never paged to surgery, nor the dissection to stroke on-call
    surgery_studies = {
        h.json()["study"]["study_instance_uid"] for h in notify_http.received("/hooks/surgery")
    }
    assert stroke.study_instance_uid not in surgery_studies
    assert all(
        "dissection" not in m.subject.lower() for m in notify_smtp.received("stroke1@hospital.test")
    )
