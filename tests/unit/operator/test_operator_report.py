"""The operator's view in Prefect: run names, the run summary and failure messages."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from deployments.cli import StateChangesOnly
from integrations.db.records import run_name
from integrations.errors import DimseStatusError, PeerUnavailableError
from integrations.operator_report import (
    AnalyzerLine,
    EscalationLine,
    MessageLine,
    ObjectsLine,
    RunSummary,
    artifact_key,
    failure_message,
    render_markdown,
)


def test_run_name_is_modality_key_and_generation():
    assert run_name(("CR",), "S7K2M9QX4PAB0", 1) == "CR S7K2M9QX4PAB0 gen 1"
    assert run_name(("CT", "SR"), "S7K2M9QX4PAB0", 3) == "CT/SR S7K2M9QX4PAB0 gen 3"
    assert run_name((), "S7K2M9QX4PAB0", 1) == "S7K2M9QX4PAB0 gen 1"


def test_artifact_key_is_what_prefect_accepts():
    assert artifact_key("S7K2M9QX4PAB0") == "study-s7k2m9qx4pab0"


def test_summary_says_what_happened_in_each_stage():
    summary = RunSummary(
        study_key="S7K2M9QX4PAB0",
        generation=2,
        modalities=("DX",),
        outcome="done",
        tier="Critical",
        analyzers=(
            AnalyzerLine("chest-xray", "1.2.0", "analysed", "Critical", ("Pneumothorax 0.91",)),
        ),
        objects=(ObjectsLine("sr", 1, 1, datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)),),
        pacs="PACS ORTHANC@10.0.0.5:104",
        messages=(MessageLine("ORU^R01", "sent", 1),),
        escalations=(EscalationLine("Pneumothorax", "surgery", "notified", 2, 3.25),),
        prior="no prior: PACS did not answer C-FIND (connection refused)",
        degraded=("the prior: no prior: PACS did not answer C-FIND",),
    )
    text = render_markdown(summary)
    assert text.startswith("# DX S7K2M9QX4PAB0 generation 2: done\n")
    assert "## AI: tier Critical" in text
    assert "| chest-xray | 1.2.0 | analysed | Critical | Pneumothorax 0.91 |" in text
    assert "## Prior: no prior: PACS did not answer C-FIND (connection refused)" in text
    assert "## Result objects to PACS ORTHANC@10.0.0.5:104" in text
    assert "| sr | 1 | 1 | 2026-12-01 10:00:05 UTC |" in text
    assert "| ORU^R01 | sent | 1 |" in text
    assert "| Pneumothorax | surgery | notified | 2 | 3.2 s |" in text
    assert "**Went on without:**\n- the prior: no prior" in text


def test_a_summary_without_findings_or_messages_says_so():
    text = render_markdown(RunSummary("S0000000000000", 1, ("CR",), "failed", failure="x"))
    assert "**Failed:** x" in text
    assert "none built" in text and "none queued" in text
    assert "no Critical finding, nobody paged" in text


def test_failure_message_names_the_step_the_cause_and_what_to_do():
    refused = PeerUnavailableError(
        "PACS ORTHANC@10.0.0.5:104 refused the association (connection refused)",
        advice="check that the PACS is up and that our AE PACSFLOW is registered",
    )
    assert failure_message("store_results", refused) == (
        "storing the SR in the PACS failed: PACS ORTHANC@10.0.0.5:104 refused the association"
        " (connection refused): check that the PACS is up and that our AE PACSFLOW is registered"
    )
    refused_store = DimseStatusError("C-STORE", 0xA700, peer="ORTHANC@10.0.0.5:104")
    assert failure_message("store_overlays", refused_store).endswith(
        "the peer refused; fix its configuration, then rerun the study"
    )
    assert failure_message("run_inference:chest-xray", RuntimeError("boom")) == (
        "AI inference failed: boom: an unexpected error: see the task's log for the traceback"
    )


def record(name: str, level: int, **extra) -> logging.LogRecord:
    item = logging.LogRecord(name, level, __file__, 1, "message", None, None)
    item.__dict__.update(extra)
    return item


def test_console_keeps_run_warnings_and_state_changes_only():
    only = StateChangesOnly()
    assert not only.filter(record("prefect.task_runs", logging.INFO))
    assert not only.filter(record("prefect.flow_runs", logging.INFO))
    assert only.filter(record("prefect.flow_runs", logging.INFO, state_change=True))
    assert only.filter(record("prefect.task_runs", logging.WARNING))
    assert only.filter(record("flows.dispatch", logging.INFO))
    named = record("prefect.flow_runs", logging.ERROR, flow_run_name="CR S0000000000000 gen 1")
    assert only.filter(named) and only.filter(named)
    assert named.getMessage() == "CR S0000000000000 gen 1: message"
