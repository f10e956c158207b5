"""The flow deployments pacsflow serves (I/O: imports the flows on demand).

``process-study`` is executed by the warm workers (in-process, models loaded) or, on the
work-pool route, by the workers of the Prefect work pool (``flows.dispatch.WorkPoolDispatcher``
deploys it there); the Runner started by ``pacsflow serve`` serves the other deployments
(training, evaluation, acceptance...) in subprocesses. Later features add their flow here:
one line each, and the same deployment in prefect.yaml (a test checks they agree).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

PROCESS_STUDY = "flows.process_study:process_study"


@dataclass(frozen=True)
class DeploymentSpec:
    entrypoint: str  # "module:flow_attribute"
    name: str
    description: str
    cron: str = ""  # a schedule (cron, UTC) for deployments that run by themselves

    def load_flow(self) -> Any:
        module_name, attribute = self.entrypoint.split(":")
        return getattr(importlib.import_module(module_name), attribute)


DEPLOYMENTS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(PROCESS_STUDY, "process-study", "Analyse one closed study (rerun from here)"),
    DeploymentSpec(
        "flows.evaluate_model:evaluate_model",
        "evaluate-model",
        "Validate a model package on a labelled local cohort (JSON + HTML report)",
    ),
    DeploymentSpec(
        "flows.train_demo_models:train_demo_models",
        "train-demo-models",
        "Rebuild the demo model packages from generated images (not for clinical use)",
    ),
    DeploymentSpec(
        "flows.monitoring:monitoring_daily",
        "monitoring-daily",
        "Daily monitoring report: failures, orphans, backlogs, latency, escalation drift",
        cron="30 6 * * *",
    ),
    DeploymentSpec(
        "flows.acceptance_suite:acceptance_suite",
        "acceptance-suite",
        "Go-live acceptance: 10 studies through PACS and node, every step timed, signed record",
    ),
)


def spec_for(entrypoint: str) -> DeploymentSpec:
    return next(spec for spec in DEPLOYMENTS if spec.entrypoint == entrypoint)


def runner_deployments(include_process_study: bool) -> list[DeploymentSpec]:
    return [
        spec for spec in DEPLOYMENTS if include_process_study or spec.entrypoint != PROCESS_STUDY
    ]
