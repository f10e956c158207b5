"""What every task shares: its outcome recorded per study and its log (I/O).

Task logs go to the Prefect UI, so they say what happened in words, with no patient data:
each step logs one line of its own, degraded steps log at WARNING, and Prefect's
"Finished in state Completed()" line for every task is dropped as noise (failures stay).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prefect import runtime as prefect_runtime

from tasks.context import StudyContext
from tasks.runtime import get_runtime

_module_log = logging.getLogger(__name__)


class _DropCompletedTaskLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Finished in state Completed(")


logging.getLogger("prefect.task_runs").addFilter(_DropCompletedTaskLines())


def step_log() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger (its lines show in the UI), or a plain one outside a run."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return _module_log


@contextmanager
def recorded_step(step: str, context: StudyContext) -> Iterator[dict[str, Any]]:
    """Record the step's outcome (completed with details, or failed with the error)."""
    store = get_runtime().store
    started = datetime.now(UTC)
    flow_run_id = prefect_runtime.flow_run.id
    detail: dict[str, Any] = {}
    try:
        yield detail
    except Exception as error:
        store.record_step(
            context.study_instance_uid,
            context.generation,
            step,
            "failed",
            {**detail, "error": f"{type(error).__name__}: {error}"},
            flow_run_id,
            started,
        )
        raise
    store.record_step(
        context.study_instance_uid,
        context.generation,
        step,
        detail.pop("_state", "completed"),
        detail,
        flow_run_id,
        started,
    )
