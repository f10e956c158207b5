"""An acknowledgement of a Critical finding is one audit record naming the user, the patient
and the study."""

from __future__ import annotations

from integrations.db.escalations import EscalationStore
from tasks.escalation import escalate


def test_acknowledgement_is_audited_once(make_site) -> None:
    site = make_site()
    context = site.closed_study("ack-audit")
    escalate.fn(context, [site.analysis(context, [("Tension Pneumothorax", 0.9)])])
    (record,) = EscalationStore(site.database).for_study(context.study_instance_uid)
    engine = site.engine()
    assert engine.acknowledge(record.ack_token, "surg1", "web").newly_acknowledged
    assert not engine.acknowledge(record.ack_token, "surg2", "web").newly_acknowledged
    with site.database.connection() as conn:
        rows = conn.execute(
            "SELECT kind, event_id, action, user_id, study_instance_uid, message"
            " FROM audit_records WHERE kind = 'acknowledgement'"
        ).fetchall()
    assert [(r["event_id"], r["action"], r["user_id"]) for r in rows] == [
        ("110103", "U", "surg1 (Dr Sam Surgeon)")
    ]
    assert rows[0]["study_instance_uid"] == context.study_instance_uid
    assert "PF-TEST-1" in rows[0]["message"]  # the sample's Patient ID, as a participant
