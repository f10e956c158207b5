"""A result from a non-clinical model says NOT FOR CLINICAL USE on every page and the worklist."""

from __future__ import annotations

from dataclasses import replace

from integrations.db.worklist import WorklistStore
from tasks.escalation import escalate
from tasks.worklist import update_worklist
from tests.integration.escalation.conftest import MODEL
from tests.integration.escalation.test_worklist import run_worklist_command

NOTICE = "NOT FOR CLINICAL USE"


def test_pages_and_worklist_of_a_non_clinical_result_carry_the_warning(make_site):
    site = make_site()
    demo = site.closed_study("nc-demo", location="Emergency bay 4")
    demo_analysis = site.analysis(demo, [("Tension Pneumothorax", 0.93)])
    assert MODEL.clinical_use is False and demo_analysis.clinical_use is False
    clinical = site.closed_study("nc-clinical", location="Ward 7")
    clinical_analysis = site.analysis(
        clinical, [("Effusion", 0.8)], model=replace(MODEL, clinical_use=True)
    )

    assert escalate.fn(demo, [demo_analysis]) == 1
    (mail,) = site.smtp.wait_for("surg1@hospital.test")
    (sms,) = site.smtp.wait_for("5550001@sms.hospital.test")
    (hook,) = site.http.wait_for("/hooks/surgery")
    (pager,) = site.http.wait_for("/pager")
    assert mail.subject.startswith(f"{NOTICE} CRITICAL AI finding")
    assert mail.body.startswith(f"{NOTICE}: this finding comes from a demo or research model")
    assert sms.body.strip().startswith(f"{NOTICE} CRITICAL AI:")
    assert hook.json()["clinical_use"] is False and hook.json()["notice"] == NOTICE
    assert pager.json()["message"].startswith(f"{NOTICE} CRITICAL AI:")

    escalate.fn(clinical, [clinical_analysis])
    update_worklist.fn(demo, [demo_analysis], results_stored=True)
    update_worklist.fn(clinical, [clinical_analysis], results_stored=True)
    rows = {row["study_instance_uid"]: row for row in WorklistStore(site.database).rows()}
    assert rows[demo.study_instance_uid]["clinical_use"] is False
    assert rows[clinical.study_instance_uid]["clinical_use"] is True

    table = run_worklist_command(site)
    assert table.returncode == 0, table.stderr
    (demo_line,) = [line for line in table.stdout.splitlines() if "A-nc-demo" in line]
    (clinical_line,) = [line for line in table.stdout.splitlines() if "A-nc-clinical" in line]
    assert NOTICE in demo_line and NOTICE not in clinical_line
