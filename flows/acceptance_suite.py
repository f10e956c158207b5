"""acceptance-suite: the go-live acceptance suite as a flow deployment (I/O).

    run_acceptance_suite (send the cases through PACS and node, measure every step, sign)
      ─▶ artifacts: a link to the signed record, a table of case × step pass/fail

The same run as ``pacsflow acceptance run`` (integrations.acceptance.suite), started from
the Prefect UI. Prefect sees no patient data: the parameters are folders and case names,
the artifacts name cases (A01...) and study keys, never a patient name, ID or accession
number (the generated phantoms' names are patient fields too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

FLOW_NAME = "acceptance-suite"
ARTIFACT_KEY = "acceptance-record"


@task(name="run_acceptance_suite", persist_result=False, cache_policy=NO_CACHE)
def run_acceptance_suite(
    output_dir: str, studies_dir: str, truth_csv: str, cases: list[str]
) -> dict[str, Any]:
    from integrations.acceptance.suite import run_acceptance
    from integrations.settings import load_settings

    logger = get_run_logger()
    outcome = run_acceptance(
        load_settings(),
        output_dir=Path(output_dir) if output_dir else None,
        studies_dir=Path(studies_dir) if studies_dir else None,
        truth_csv=Path(truth_csv) if truth_csv else None,
        only=cases,
        progress=logger.info,  # case names and step counts only
    )
    return {
        "record": outcome.record,
        "json": str(outcome.json_path),
        "html": str(outcome.html_path),
        "pdf": str(outcome.pdf_path),
    }


def summary_markdown(record: dict[str, Any]) -> str:
    """Case × step pass/fail, PHI-free (case, study key, modality, tiers)."""
    steps = list(record["steps"])
    lines = [
        f"**Go-live: {record['go_live']}** (run {record['run_id']}, {len(record['cases'])} cases)",
        "",
        "| case | study key | modality | expected | found | " + " | ".join(steps) + " |",
        "|" + "---|" * (5 + len(steps)),
    ]
    for case in record["cases"]:
        marks = {step["step"]: ("pass" if step["passed"] else "**FAIL**") for step in case["steps"]}
        lines.append(
            f"| {case['case']} | {case['study_key']} | {case['modality']} | "
            f"{case['expected_tier']} | {case['found_tier'] or '-'} | "
            + " | ".join(marks.get(step, "") for step in steps)
            + " |"
        )
    return "\n".join(lines)


@flow(name=FLOW_NAME, persist_result=False, log_prints=False)
def acceptance_suite(
    output_dir: str = "",
    studies_dir: str = "",
    truth_csv: str = "",
    cases: list[str] | None = None,
) -> dict[str, Any]:
    """Run the acceptance suite; returns the verdict and where the signed record is."""
    outcome = run_acceptance_suite(output_dir, studies_dir, truth_csv, list(cases or []))
    record = outcome["record"]
    create_link_artifact(
        key=ARTIFACT_KEY,
        link=Path(outcome["html"]).resolve().as_uri(),
        link_text=f"acceptance record {record['run_id']}: go-live {record['go_live']}",
        description=f"Signed record: {outcome['json']} (verify with `pacsflow acceptance verify`)",
    )
    create_markdown_artifact(
        key=f"{ARTIFACT_KEY}-steps",
        markdown=summary_markdown(record),
        description="acceptance steps per case",
    )
    get_run_logger().info("go-live %s: record %s", record["go_live"], outcome["json"])
    return {
        "go_live": record["go_live"],
        "failed_steps": record["failed_steps"],
        "record": outcome["json"],
    }
