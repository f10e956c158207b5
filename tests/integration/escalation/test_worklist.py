"""The worklist: Critical first whatever the arrival order, the tier's HL7 route to the RIS,
and ``pacsflow worklist`` as an operator sees it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hl7apy.parser import parse_message

from integrations.db.outbox import OutboxStore
from integrations.db.store import StudyStore
from integrations.db.worklist import WorklistStore
from integrations.dicom.header import read_header
from tasks.escalation import escalate
from tasks.worklist import update_worklist
from tests.dicom_samples import make_instance, write

REPO = Path(__file__).resolve().parents[3]


def run_worklist_command(site, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PACSFLOW_DATABASE__URL": site.settings.database.url,
        "PACSFLOW_NODE__STORAGE_DIR": str(site.settings.node.storage_dir),
        "COLUMNS": "200",
    }
    env.pop("PACSFLOW_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", "worklist", *args],
        cwd=site.tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_critical_study_sent_last_is_at_the_top(make_site):
    site = make_site(worklist={"route": "omi_o23"})
    routine = site.closed_study("wl-routine", closed_seconds_ago=40)
    urgent = site.closed_study("wl-urgent", closed_seconds_ago=30)
    waiting = site.closed_study("wl-waiting", closed_seconds_ago=20)  # not analysed yet
    for context, findings in ((routine, [("Effusion", 0.7)]), (urgent, [("Fracture", 0.8)])):
        analysis = site.analysis(context, findings)
        escalate.fn(context, [analysis])
        update_worklist.fn(context, [analysis], results_stored=True)
    critical = site.closed_study("wl-critical", location="Resus 1")  # sent and closed last

    analysis = site.analysis(critical, [("Intracranial hemorrhage", 0.9)], analyzer="head-ct")
    escalate.fn(critical, [analysis])
    # at the top as soon as inference yields the tier, before results are stored
    store = WorklistStore(site.database)
    order = [row["study_instance_uid"] for row in store.rows()]
    assert order == [
        critical.study_instance_uid,
        urgent.study_instance_uid,
        routine.study_instance_uid,
        waiting.study_instance_uid,
    ]
    top = store.rows()[0]
    assert (top["tier"], top["primary_finding"], top["status"]) == (
        "Critical",
        "Intracranial hemorrhage",
        "analysing",
    )
    assert top["tier_rule"] == "default:intracranial-hemorrhage"
    assert top["patient_location"] == "Resus 1"
    assert top["escalation_state"] == "unacknowledged"
    assert top["analysed_at"] is not None and top["results_stored_at"] is None
    update_worklist.fn(critical, [analysis], results_stored=True)
    top = store.rows()[0]
    assert top["study_instance_uid"] == critical.study_instance_uid
    assert top["status"] == "results stored" and top["results_stored_at"] is not None

    # the tier's route to the RIS: one OMI^O23 per tier change, never for Routine
    outbox = OutboxStore(site.database)
    for context, priority in ((critical, "S"), (urgent, "A")):
        (message,) = [
            m for m in outbox.messages(context.study_instance_uid) if m["message_type"] == "OMI^O23"
        ]
        parsed = parse_message(message["payload"], find_groups=False)
        (tq1,) = [s for s in parsed.children if s.name == "TQ1"]
        assert tq1.tq1_9.value.startswith(f"{priority}^")
    assert outbox.messages(routine.study_instance_uid) == []

    # the operator's view: Critical first, in the table and as JSON
    table = run_worklist_command(site)
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if "A-wl-" in line]
    assert ["A-wl-critical" in lines[0], "A-wl-urgent" in lines[1]] == [True, True]
    assert "Critical" in lines[0] and "Intracranial" in lines[0]
    assert "Test^Patient" not in table.stdout  # names only on request
    as_json = run_worklist_command(site, "--json", "--tier", "Critical")
    assert as_json.returncode == 0, as_json.stderr
    (row,) = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert row["study_instance_uid"] == critical.study_instance_uid
    assert "patient_name" not in row


def test_a_later_analyzer_never_lowers_the_tier_within_a_run(make_site):
    site = make_site()
    context = site.closed_study("wl-two")
    critical = site.analysis(context, [("Tension Pneumothorax", 0.9)])
    routine = site.analysis(context, [("Effusion", 0.1)], analyzer="second")
    escalate.fn(context, [critical])
    escalate.fn(context, [routine])
    store = WorklistStore(site.database)
    assert store.get(context.study_instance_uid)["tier"] == "Critical"
    assert update_worklist.fn(context, [critical, routine], results_stored=True) == "Critical"
    # a run with only the Routine result (the finding went away) writes its final tier
    assert update_worklist.fn(context, [routine], results_stored=True) == "Routine"
    assert store.get(context.study_instance_uid)["tier"] == "Routine"
    assert store.mark_read(context.study_instance_uid)
    assert store.rows(include_read=False) == []


def test_a_study_still_arriving_is_listed_as_received_and_a_prior_is_not(make_site):
    site = make_site()
    store = StudyStore(site.database)
    arriving = make_instance("wl-arriving", accession="A-wl-arriving")
    prior = make_instance("wl-prior", accession="A-wl-prior")
    for dataset, as_prior in ((arriving, False), (prior, True)):
        path = write(dataset, site.tmp_path / "instances" / dataset.AccessionNumber)
        data = path.read_bytes()
        store.record_instance(
            read_header(data),
            path=str(path),
            size_bytes=len(data),
            calling_ae_title="MODALITY",
            as_prior=as_prior,
        )
    analysed = site.closed_study("wl-analysed")
    escalate.fn(analysed, [site.analysis(analysed, [("Effusion", 0.7)])])

    worklist = WorklistStore(site.database)
    rows = worklist.rows()
    assert [row["study_instance_uid"] for row in rows] == [
        analysed.study_instance_uid,
        arriving.StudyInstanceUID,
    ]
    received = rows[1]
    assert (received["status"], received["tier"], received["accession_number"]) == (
        "received",
        None,
        "A-wl-arriving",
    )
    assert received["received_at"] is not None and received["closed_at"] is None
    assert worklist.rows(tier="Routine") == [rows[0]]
    table = run_worklist_command(site)
    assert table.returncode == 0, table.stderr
    (line,) = [line for line in table.stdout.splitlines() if "A-wl-arriving" in line]
    assert "received" in line

    # processing starts: the same study, now a row of its own, analysing
    worklist.mark_analysing(arriving.StudyInstanceUID)
    statuses = {row["study_instance_uid"]: row["status"] for row in worklist.rows()}
    assert statuses[arriving.StudyInstanceUID] == "analysing"
    assert len(statuses) == 2


def test_the_priority_update_goes_to_the_ris_and_never_to_the_emr(make_site, make_mllp_peer):
    from integrations.hl7.sender import Hl7Sender
    from tests.integration.emr.helpers import fast_emr

    ris, emr = make_mllp_peer(validate=False), make_mllp_peer(validate=False)
    site = make_site(worklist={"route": "orm_o01"}, ris=fast_emr(ris.port), emr=fast_emr(emr.port))
    context = site.closed_study("wl-ris", location="Resus 2")
    analysis = site.analysis(context, [("Intracranial hemorrhage", 0.9)], analyzer="head-ct")
    escalate.fn(context, [analysis])
    update_worklist.fn(context, [analysis], results_stored=True)
    (queued,) = [
        m
        for m in OutboxStore(site.database).messages(context.study_instance_uid)
        if m["message_type"] == "ORM^O01"
    ]
    ris_sender, emr_sender = Hl7Sender(site.database, site.settings, "ris"), None
    try:
        assert ris_sender.drain() == 1
        emr_sender = Hl7Sender(site.database, site.settings)
        emr_sender.drain()
    finally:
        ris_sender.close()
        if emr_sender is not None:
            emr_sender.close()
    (received,) = ris.wait_for(1)
    assert received["text"].split("\r")[0].split("|")[8] == "ORM^O01^ORM_O01"  # MSH-9
    assert queued["message_control_id"] in received["text"]
    assert not any("ORM^O01" in record["text"] for record in emr.received())
    with site.database.connection() as conn:
        row = conn.execute(
            "SELECT destination, state FROM hl7_outbox WHERE message_control_id = %s",
            (queued["message_control_id"],),
        ).fetchone()
    assert (row["destination"], row["state"]) == ("ris", "sent")
