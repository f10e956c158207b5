"""The warm worker's one suspension observer: a "Suspend" from the UI still stops an
in-process deployment run at its next task, as Prefect's per-run observer did, without a
thread, loop and events subscription per run (real Prefect server)."""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager

import prefect.flow_engine as flow_engine
import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import Pause
from prefect.flow_engine import run_flow_async
from prefect.states import Pending, Suspended

from flows.suspension import shared_suspension_observer

ran: list[str] = []


@task(cache_policy=NO_CACHE, persist_result=False)
def suspend_own_run(suspend: bool) -> bool:
    """As an operator pressing Suspend in the UI while this run is in this task."""
    ran.append("first")
    if not suspend:
        return False
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(context.flow_run.id, Suspended(timeout_seconds=600), force=True)
    deadline = time.monotonic() + 30
    while not context.flow_run_suspension_request.is_requested():
        if time.monotonic() > deadline:
            return False  # never noticed: the next task runs and the test fails
        time.sleep(0.05)
    return True


@task(cache_policy=NO_CACHE, persist_result=False)
def next_step() -> None:
    ran.append("second")


@flow(name="suspension-observer-test", persist_result=False)
async def two_steps(suspend: bool) -> str:
    suspend_own_run(suspend)
    next_step()
    return "done"


@pytest.fixture
def per_run_observers(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Prefect's per-run observer, recording each run handed to it."""
    original = flow_engine.observe_flow_run_suspension
    used: list[object] = []

    @contextmanager
    def recording(flow_run_id, request, *args, **kwargs):
        used.append(flow_run_id)
        with original(flow_run_id, request, *args, **kwargs):
            yield

    monkeypatch.setattr(flow_engine, "observe_flow_run_suspension", recording)
    return used


async def deployment_run(deployment_id, suspend: bool):
    """The run's state on the server once the engine returned (or raised Pause, as Prefect's
    engine does for a suspended run)."""
    async with get_client() as client:
        flow_run = await client.create_flow_run_from_deployment(
            deployment_id, parameters={"suspend": suspend}, state=Pending()
        )
        try:
            await run_flow_async(
                two_steps, flow_run=flow_run, parameters={"suspend": suspend}, return_type="state"
            )
        except Pause:
            assert suspend, "paused without a Suspend"
        return (await client.read_flow_run(flow_run.id)).state


def test_suspend_from_the_ui_stops_the_run_at_its_next_task(prefect_api_url, per_run_observers):
    async def scenario():
        deployment = await two_steps.ato_deployment(name="suspension-observer-test")
        deployment_id = await deployment.aapply()
        with shared_suspension_observer():
            suspended = await deployment_run(deployment_id, suspend=True)
            after = list(ran)
            ran.clear()
            # the observer outlives the run: the next run of the worker goes through
            completed = await deployment_run(deployment_id, suspend=False)
        return suspended, after, completed

    ran.clear()
    suspended, after_suspend, completed = asyncio.run(scenario())
    assert suspended.is_paused() and suspended.name == "Suspended"
    assert after_suspend == ["first"]  # the step after the Suspend never ran
    assert completed.is_completed() and ran == ["first", "second"]
    assert per_run_observers == []  # no per-run thread, loop and subscription
    assert flow_engine.observe_flow_run_suspension.__name__ == "recording"  # restored
