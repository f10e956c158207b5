"""What every task shares: its outcome recorded per study, and the retry policy (I/O)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prefect import runtime as prefect_runtime

from integrations.errors import is_transient
from integrations.settings import RetrySettings
from tasks.context import StudyContext
from tasks.runtime import get_runtime


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only when the failure is a TransientError."""
    try:
        state.result()
    except Exception as error:
        return is_transient(error)
    return False


def peer_task_options(retries: RetrySettings | None = None) -> dict[str, Any]:
    """Task options for a step that talks to a peer: backoff, jitter, transient failures only."""
    retries = retries or RetrySettings()
    return {
        "retries": retries.attempts,
        "retry_delay_seconds": list(retries.delays_seconds) or [0.0],
        "retry_jitter_factor": retries.jitter,
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
