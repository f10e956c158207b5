"""The operators' alert about result deliveries, in each channel's form (pure)."""

from datetime import UTC, datetime

from integrations.escalation.notification import SHORT_TEXT_LIMIT, OperationalAlert
from integrations.escalation.rules import Recipient
from integrations.settings import PersonSettings


def test_operational_alert_has_no_acknowledgement_and_a_bounded_short_text():
    ops = Recipient("ops1", PersonSettings(name="Ops", email="ops1@hospital.test"))
    alert = OperationalAlert(
        idempotency_key="results-late-7-3",
        team_id="pacs-admin",
        team_name="PACS admins",
        recipients=(ops,),
        title="3 result object(s) of 1 study(ies) not delivered to ORTHANC@pacs:104 after 15 min"
        + " (and more words)" * 10,
        lines=("Studies: 1.2.3",),
        facts={"alert": "results_delivery_late", "objects": 3},
        issued_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    body = alert.to_json()
    assert body["type"] == "pacsflow.operational_alert"
    assert body["facts"] == {"alert": "results_delivery_late", "objects": 3}
    assert "acknowledge" not in body and "patient" not in body
    assert alert.delivery_id == "results-late-7-3"
    assert len(alert.short_text()) == SHORT_TEXT_LIMIT
    assert alert.subject().startswith("pacsflow ALERT: 3 result object(s)")
    assert alert.for_recipient(ops).recipients == (ops,)
    assert "Studies: 1.2.3" in alert.email_body()
