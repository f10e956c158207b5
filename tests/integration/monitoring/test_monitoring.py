"""The monitoring report against real PostgreSQL and Orthanc: a planted orphan and a planted
escalation-rate drift are found, the alert reaches the operators' webhook, and neither the
report nor the alert names a patient."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydicom import dcmread

from deployments.orthanc import free_port
from integrations.db.connection import Database, open_database
from integrations.dicom.result_sender import ResultsSender
from integrations.monitoring.daily import alert_on_report, build_report, write_report
from tests.fix_notify import ops_team_escalation
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE
from tests.integration.results.outbox_helpers import add_study, built_results, enqueue

WEBHOOK_SECRET = "monitoring-test-webhook-secret"
PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PAT001"


def study_key(database: Database, study_uid: str) -> str:
    with database.connection() as conn:
        return conn.execute(
            "SELECT study_key FROM studies WHERE study_instance_uid = %s", (study_uid,)
        ).fetchone()["study_key"]


def record_sr(database: Database, study_uid: str, report, built_hours_ago: float) -> None:
    """The SR as the flow records it in result_objects, built some time ago."""
    series_uid = str(dcmread(report.path, stop_before_pixels=True).SeriesInstanceUID)
    with database.connection() as conn:
        conn.execute(
            "INSERT INTO result_objects (sop_instance_uid, study_instance_uid,"
            " series_instance_uid, sop_class_uid, kind, analyzer, model_version, generation,"
            " path, content_sha256, status, built_at)"
            " VALUES (%s, %s, %s, %s, 'sr', 'chest-xray', '1', 1, %s, %s, 'final',"
            " clock_timestamp() - make_interval(secs => %s))",
            (
                report.sop_instance_uid,
                study_uid,
                series_uid,
                report.sop_class_uid,
                report.path,
                report.content_sha256,
                built_hours_ago * 3600,
            ),
        )


def test_monitoring_finds_the_planted_orphans_and_alerts_the_operators(
    settings_factory, clean_orthanc, tmp_path, notify_http, monkeypatch
):
    monkeypatch.setenv("PACSFLOW_ESCALATION__WEBHOOK_SECRET", WEBHOOK_SECRET)
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE},
        pacs={"ae_title": PACS_AE_TITLE, "port": clean_orthanc.dicom_port, "timeout_seconds": 5},
        results={"retry_delays_seconds": [0.2], "alert_team": "pacs-admin"},
        escalation=ops_team_escalation(notify_http.url("/hooks/ops")),
        monitoring={"orphan_grace_minutes": 30, "stuck_minutes": 60},
    )
    database = open_database(settings)
    # Study A: its SR really went to Orthanc through the results outbox.
    image_a, reports_a, _ = built_results(tmp_path, "mon-delivered")
    study_a = add_study(database, image_a)
    enqueue(database, study_a, reports_a, [])
    sender = ResultsSender(database, settings)
    assert sender.drain() == 1
    sender.close()
    record_sr(database, study_a, reports_a[0], built_hours_ago=2)
    # Study B (the planted orphan): the outbox says sent, the PACS does not have it.
    image_b, reports_b, _ = built_results(tmp_path, "mon-orphan")
    study_b = add_study(database, image_b)
    enqueue(database, study_b, reports_b, [])
    record_sr(database, study_b, reports_b[0], built_hours_ago=2)
    # Study C: built a minute ago, within the grace period: not judged yet.
    image_c, reports_c, _ = built_results(tmp_path, "mon-recent")
    study_c = add_study(database, image_c)
    record_sr(database, study_c, reports_c[0], built_hours_ago=1 / 60)
    with database.connection() as conn:
        conn.execute(
            "UPDATE results_outbox SET state = 'sent', sent_at = clock_timestamp()"
            " WHERE study_instance_uid = %s",
            (study_b,),
        )
        # an ORU the EMR never acknowledged (two hours old), and one it did
        for control_id, state in (("ORU-UNACKED-1", "pending"), ("ORU-ACKED-1", "sent")):
            conn.execute(
                "INSERT INTO hl7_outbox (message_control_id, study_instance_uid, message_type,"
                " payload, state, attempts, ack_code, created_at, destination) VALUES"
                " (%s, %s, 'ORU^R01', 'MSH|', %s, 7, 'AE',"
                "  clock_timestamp() - interval '2 hours', 'emr')",
                (control_id, study_a, state),
            )
        # a failed, an unrouted and a stuck study; a refused C-STORE
        for uid, state in (("1.2.826.0.1.99.1", "failed"), ("1.2.826.0.1.99.2", "unrouted")):
            conn.execute(
                "INSERT INTO studies (study_instance_uid, patient_name, patient_id, state,"
                " unrouted_reason, closed_at) VALUES (%s, %s, %s, %s, %s, clock_timestamp())",
                (uid, PATIENT_NAME, PATIENT_ID, state, "no rule matched: MR KNEE"),
            )
        conn.execute(
            "INSERT INTO studies (study_instance_uid, patient_name, state, generation)"
            " VALUES ('1.2.826.0.1.99.3', %s, 'processing', 1)",
            (PATIENT_NAME,),
        )
        conn.execute(
            "INSERT INTO dispatch (study_instance_uid, generation, reason, state, started_at)"
            " VALUES ('1.2.826.0.1.99.3', 1, 'closed', 'running',"
            " clock_timestamp() - interval '3 hours')"
        )
        conn.execute(
            "INSERT INTO node_events (kind, calling_ae_title, peer_host, detail)"
            " VALUES ('store_refused', 'MODALITY1', '10.0.0.7', '0xA700 out of resources')"
        )
        # nine inferences of 11 to 19 seconds
        conn.execute(
            "INSERT INTO studies (study_instance_uid, state)"
            " SELECT '1.2.826.0.1.97.' || n, 'done' FROM generate_series(1, 9) n"
        )
        conn.execute(
            "INSERT INTO study_steps (study_instance_uid, generation, step, state, started_at,"
            " finished_at) SELECT '1.2.826.0.1.97.' || n, 1, 'run_inference:chest-xray',"
            " 'completed', clock_timestamp() - make_interval(secs => 10 + n), clock_timestamp()"
            " FROM generate_series(1, 9) n"
        )

    report = build_report(settings, database, days=1)

    by_kind = {(o.kind, o.reference): o for o in report.orphans}
    assert set(by_kind) == {
        ("sr_not_in_pacs", reports_b[0].sop_instance_uid),
        ("oru_not_acknowledged", "ORU-UNACKED-1"),
    }
    orphan = by_kind[("sr_not_in_pacs", reports_b[0].sop_instance_uid)]
    assert orphan.study_key == study_key(database, study_b)
    assert "results outbox: sent" in orphan.detail
    assert report.orphans_checked == 2 and report.orphan_check_error == ""
    assert [s.study_instance_uid for s in report.failed] == ["1.2.826.0.1.99.1"]
    assert [s.study_instance_uid for s in report.unrouted] == ["1.2.826.0.1.99.2"]
    assert [s.study_instance_uid for s in report.stuck] == ["1.2.826.0.1.99.3"]
    assert [(d.kind, d.count) for d in report.interface_drops] == [("store_refused", 1)]
    (latency,) = [s for s in report.latency if s.step == "run_inference:chest-xray"]
    assert latency.count == 9 and 14 <= latency.p50 <= 16
    hl7 = [o for o in report.outboxes if o.outbox == "hl7_outbox"]
    assert [(o.destination, o.pending) for o in hl7] == [("emr", 1)]
    assert {c.check for c in report.crossings} >= {
        "orphans",
        "failed_studies",
        "stuck_studies",
        "outbox_age",
    }

    json_path, html_path = write_report(report, tmp_path / "reports")
    data = json.loads(json_path.read_text())
    assert data["counts"]["orphans"] == 2
    html = html_path.read_text()
    assert reports_b[0].sop_instance_uid in html and orphan.study_key in html
    assert alert_on_report(report, settings, database, report_path=html_path)
    (hook,) = notify_http.wait_for("/hooks/ops", timeout=20)
    body = hook.json()
    assert body["type"] == "pacsflow.operational_alert"
    assert body["facts"]["alert"] == "monitoring" and body["facts"]["counts"]["orphans"] == 2
    assert "orphans" in body["facts"]["checks"]
    assert any(orphan.study_key in line for line in body["text"])
    for text in (json_path.read_text(), html, hook.body.decode()):
        for private in (PATIENT_NAME, PATIENT_ID, str(image_b.AccessionNumber)):
            assert private not in text
    database.close()


def test_an_unreachable_pacs_or_a_missing_baseline_is_reported_never_ignored(
    settings_factory, tmp_path
):
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE},
        pacs={"ae_title": PACS_AE_TITLE, "port": free_port(), "timeout_seconds": 2},
        # configured before the acceptance suite ran: no baseline, the report goes on
        monitoring={"acceptance_record": str(tmp_path / "not-yet" / "acceptance.json")},
    )
    database = open_database(settings)
    image, reports, _ = built_results(tmp_path, "mon-down")
    study = add_study(database, image)
    record_sr(database, study, reports[0], built_hours_ago=2)
    report = build_report(settings, database, days=1)
    assert report.orphans == () and report.orphans_checked == 0
    assert "C-FIND to the PACS failed" in report.orphan_check_error
    assert {c.check for c in report.crossings} == {"orphan_check", "acceptance_baseline"}
    assert "does not exist" in report.acceptance_error
    database.close()


def plant_worklist(database: Database, modality: str, daily: list[tuple[int, int]]) -> None:
    """``daily`` (studies, Critical) per 24-hour window, oldest first, ending now."""
    now = datetime.now(UTC)
    with database.connection() as conn:
        for age, (studies, critical) in enumerate(reversed(daily)):
            for index in range(studies):
                uid = f"1.2.826.0.1.98.{modality_number(modality)}.{age}.{index}"
                conn.execute(
                    "INSERT INTO studies (study_instance_uid, patient_name, state)"
                    " VALUES (%s, %s, 'done')",
                    (uid, PATIENT_NAME),
                )
                conn.execute(
                    "INSERT INTO worklist (study_instance_uid, patient_name, modality, tier,"
                    " status, analysed_at) VALUES (%s, %s, %s, %s, 'results stored', %s)",
                    (
                        uid,
                        PATIENT_NAME,
                        modality,
                        "Critical" if index < critical else "Routine",
                        now - timedelta(days=age, hours=1),
                    ),
                )


def modality_number(modality: str) -> int:
    return {"CT": 1, "CR": 2, "MR": 3}[modality]


def test_monitoring_finds_a_planted_escalation_rate_drift(
    settings_factory, tmp_path, notify_http, monkeypatch
):
    monkeypatch.setenv("PACSFLOW_ESCALATION__WEBHOOK_SECRET", WEBHOOK_SECRET)
    acceptance = tmp_path / "acceptance.json"
    acceptance.write_text(
        json.dumps(
            {
                "studies": [
                    {"study_key": "S1", "modality": "CT", "observed_tier": "Critical"},
                    *({"study_key": f"S{i}", "modality": "CT", "observed_tier": "Urgent"}
                      for i in (2, 3, 4)),
                    {"study_key": "S5", "modality": "MR", "observed_tier": "Critical"},
                    *({"study_key": f"S{i}", "modality": "MR", "observed_tier": "Routine"}
                      for i in range(6, 15)),
                ]
            }
        )
    )  # fmt: skip
    settings = settings_factory(
        escalation=ops_team_escalation(notify_http.url("/hooks/ops")),
        monitoring={
            "alert_team": "pacs-admin",
            "acceptance_record": str(acceptance),
            "historical_flag_rates": {"CT": 0.10, "CR": 0.05, "mr": 0.10},
            "min_studies_per_day": 20,
        },
    )
    database = open_database(settings)
    # CT: 25 % Critical every day for 8 days (the acceptance rate, 2.5 x the historical one)
    plant_worklist(database, "CT", [(24, 6)] * 8)
    # CR: on the historical rate, 5 %
    plant_worklist(database, "CR", [(40, 2)] * 8)
    # MR: on its rates (10 %) until today's 20 %
    plant_worklist(database, "MR", [(20, 2)] * 7 + [(20, 4)])

    report = build_report(settings, database, days=1)

    drifts = {(r.modality, d.reference): d for r in report.escalation for d in r.drifts}
    assert set(drifts) == {
        ("CT", "acceptance"),
        ("CT", "historical"),
        ("CR", "historical"),
        ("MR", "acceptance"),
        ("MR", "historical"),
    }
    assert drifts[("CT", "acceptance")].level == 0
    ct = drifts[("CT", "historical")]
    assert ct.level == 2 and ct.sustained_days == 7 and ct.divergence == pytest.approx(1.5)
    assert drifts[("CR", "historical")].level == 0
    assert (
        drifts[("MR", "historical")].level == 1 and drifts[("MR", "historical")].sustained_days == 1
    )
    assert drifts[("MR", "acceptance")].level == 1
    (ct_rate,) = [r for r in report.escalation if r.modality == "CT"]
    assert (ct_rate.studies, ct_rate.escalated) == (24, 6)
    assert [d.studies for d in ct_rate.days] == [24] * 7  # the sustained window
    assert report.level == 2
    sustained = [c for c in report.crossings if c.check == "escalation_rate_sustained"]
    assert len(sustained) == 1 and sustained[0].message.startswith("CT escalation rate")
    assert {c.check for c in report.crossings} == {"escalation_rate", "escalation_rate_sustained"}

    assert alert_on_report(report, settings, database)
    (hook,) = notify_http.wait_for("/hooks/ops", timeout=20)
    assert hook.json()["facts"]["level"] == 2
    assert PATIENT_NAME not in hook.body.decode()
    database.close()


def test_the_daily_flow_writes_the_report_and_tells_prefect_counts_only(
    settings_factory, prefect_api_url, tmp_path
):
    import asyncio

    import httpx

    from flows.monitoring import ARTIFACT_KEY, monitoring_daily
    from tasks.runtime import Runtime, install_runtime, reset_runtime

    settings = settings_factory(monitoring={"output_dir": str(tmp_path / "daily")})
    database = open_database(settings)
    with database.connection() as conn:
        conn.execute(
            "INSERT INTO studies (study_instance_uid, patient_name, patient_id, accession_number,"
            " state) VALUES ('1.2.826.0.1.95.1', %s, %s, 'ACC-MON-77', 'failed')",
            (PATIENT_NAME, PATIENT_ID),
        )
    key = study_key(database, "1.2.826.0.1.95.1")
    install_runtime(Runtime(settings, database))
    try:
        summary = asyncio.run(monitoring_daily(days=1, alert=False))
    finally:
        reset_runtime()
        database.close()
    assert summary["counts"]["failed"] == 1 and summary["level"] == 1
    assert any(key in line for line in summary["crossings"])
    report = json.loads((tmp_path / "daily" / summary["json"].rsplit("/", 1)[1]).read_text())
    assert report["failed"][0]["study_key"] == key
    (artifact,) = httpx.post(
        f"{prefect_api_url}/artifacts/filter", json={"artifacts": {"key": {"any_": [ARTIFACT_KEY]}}}
    ).json()
    assert "| failed | 1 |" in artifact["data"] and key in artifact["data"]
    seen = json.dumps([summary, artifact])
    for private in (PATIENT_NAME, PATIENT_ID, "ACC-MON-77"):
        assert private not in seen


def test_monitor_command_exits_1_and_says_which_threshold(
    pacsflow_process, clean_database_url, database, tmp_path
):
    config = {"database": {"url": clean_database_url}, "node": {"storage_dir": str(tmp_path)}}
    quiet = pacsflow_process(["monitor", "--days", "2", "--output", str(tmp_path / "r")], config)
    assert quiet.process is not None and quiet.process.wait(120) == 0, quiet.log
    assert "failed 0" in quiet.log and "ALERT" not in quiet.log
    with database.connection() as conn:
        conn.execute(
            "INSERT INTO studies (study_instance_uid, patient_name, state)"
            " VALUES ('1.2.826.0.1.94.1', %s, 'failed')",
            (PATIENT_NAME,),
        )
    failing = pacsflow_process(["monitor", "--output", str(tmp_path / "r")], config)
    assert failing.process is not None and failing.process.wait(120) == 1, failing.log
    assert "ALERT level 1 [failed_studies] 1 failed studies" in failing.log
    assert PATIENT_NAME not in failing.log
    assert sorted(path.suffix for path in (tmp_path / "r").iterdir()) == [".html", ".json"]
