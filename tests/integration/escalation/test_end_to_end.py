"""The full chain: a Critical chest radiograph sent by Orthanc reaches the on-call surgeon
within 60 s of study close, before result objects or EMR messages (Orthanc → node → study
close → warm worker → process-study → escalate → recording webhook and SMTP peers)."""

from __future__ import annotations

import io
import time

from integrations.db.escalations import EscalationStore
from integrations.db.worklist import WorklistStore
from integrations.escalation.notification import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from models.phantoms.chest import chest_xray_study
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE
from tests.integration.escalation.conftest import WEBHOOK_SECRET, escalation_section
from tests.site import running_node, running_worker

DEADLINE_SECONDS = 60.0


def pneumothorax(server, timeout: float):
    """The webhook POST about the pneumothorax finding, waiting for it among any others."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for hook in server.received("/hooks/surgery"):
            if hook.json()["finding"]["label"] == "Pneumothorax":
                return hook
        time.sleep(0.05)
    raise AssertionError("no pneumothorax notification")


def test_critical_chest_radiograph_from_the_pacs_reaches_the_surgeon_within_60_seconds(
    settings_factory,
    clean_orthanc,
    prefect_api_url,
    demo_models_dir,
    notify_http,
    notify_smtp,
    tmp_path,
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
                    "name": "chest",
                    "modality": ["DX"],
                    "body_part": ["CHEST"],
                    "analyzers": ["chest-xray"],
                }
            ]
        },
        # The phantom shows a tension pneumothorax; a site rule also makes any pneumothorax
        # probability Critical, so the Critical path is taken whatever the demo model's call.
        urgency={
            "rules": [
                {
                    "name": "e2e-any-pneumothorax",
                    "labels": ["Pneumothorax"],
                    "min_probability": 0.0,
                    "tier": "Critical",
                }
            ]
        },
        escalation=escalation_section(
            notify_http,
            notify_smtp,
            rules=[{"name": "e2e-pneumothorax", "labels": ["Pneumothorax"], "team": "surgery"}],
        ),
    )
    study = chest_xray_study(61, ["Tension Pneumothorax"], accession_number="E2E-CRIT")
    for dataset in study.datasets:
        dataset.CurrentPatientLocation = "Emergency bay 2"
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        clean_orthanc.client.upload(buffer.getvalue())
    study_uid = study.study_instance_uid

    with running_node(settings) as site, running_worker(settings):
        outcome = clean_orthanc.client.send_study("pacsflow", [study_uid])
        assert outcome["FailedInstancesCount"] == 0
        # the demo model may also call other Critical findings on a generated image (each is
        # its own escalation); this test follows the pneumothorax one
        hook = pneumothorax(notify_http, timeout=DEADLINE_SECONDS + 30)
        notify_smtp.wait_for("surg1@hospital.test", timeout=30)
        time.sleep(1.0)  # the e-mail goes out in parallel with the webhook
        mail = next(
            m
            for m in notify_smtp.received("surg1@hospital.test")
            if "finding: Pneumothorax (" in m.subject
        )
        study = site.store.study(study_uid)
        assert study is not None and study.closed_at is not None
        for received_at in (hook.received_at, mail.received_at):
            assert 0 <= received_at - study.closed_at.timestamp() < DEADLINE_SECONDS
        assert verify_signature(
            WEBHOOK_SECRET.encode(),
            hook.header(TIMESTAMP_HEADER),
            hook.body,
            hook.header(SIGNATURE_HEADER),
            now=time.time(),
        )
        body = hook.json()
        assert body["study"]["study_instance_uid"] == study_uid
        assert body["patient"]["ward"] == "Emergency bay 2"
        assert body["finding"]["label"] == "Pneumothorax"
        assert body["finding"]["rule"] == "site:e2e-any-pneumothorax"

        (record,) = [
            r
            for r in EscalationStore(site.database).for_study(study_uid)
            if r.finding == "Pneumothorax"
        ]
        assert record.first_notification_seconds is not None
        assert record.first_notification_seconds < DEADLINE_SECONDS
        assert WorklistStore(site.database).rows()[0]["study_instance_uid"] == study_uid

        # escalation finished before any result object was built
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with site.database.connection() as conn:
                steps = {
                    row["step"]: row
                    for row in conn.execute(
                        "SELECT step, state, finished_at FROM study_steps WHERE study_instance_uid = %s",
                        (study_uid,),
                    )
                }
            built = [s for name, s in steps.items() if name.startswith("build_results")]
            if built:
                break
            time.sleep(0.2)
        assert built, "build_results never ran: the chain after escalation is incomplete"
        escalated = steps["escalate"]
        assert escalated["state"] == "completed"
        assert all(escalated["finished_at"] <= step["finished_at"] for step in built)
    # one run, one notification per finding
    labels = [r.json()["finding"]["label"] for r in notify_http.received("/hooks/surgery")]
    assert labels.count("Pneumothorax") == 1 and len(labels) == len(set(labels))
