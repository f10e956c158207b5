"""What every task shares: its outcome recorded per study, and the retry policy (I/O)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prefect import runtime as prefect_runtime

from integrations.errors import is_transient
from tasks.context import StudyContext
from tasks.runtime import get_runtime

# Retries sit on the tasks that talk to a peer, for transient failures only (STYLE habit 6).
PEER_RETRIES = 4
PEER_RETRY_DELAYS_SECONDS = [1, 5, 15, 30]
PEER_RETRY_JITTER = 0.3


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only when the failure is a TransientError."""
    try:
        state.result()
    except Exception as error:
        return is_transient(error)
    return False


def peer_task_options() -> dict[str, Any]:
    return {
        "retries": PEER_RETRIES,
        "retry_delay_seconds": PEER_RETRY_DELAYS_SECONDS,
        "retry_jitter_factor": PEER_RETRY_JITTER,
        "retry_condition_fn": retry_on_transient,
    }


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
