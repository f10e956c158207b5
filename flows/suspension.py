"""One Prefect suspension observer per warm worker, instead of one per flow run (I/O).

Prefect's engine watches every deployment run for a "Suspend" from the UI: for each run it
starts a thread with its own event loop, an API client (and a TLS context from the CA
bundle), a subscription to the events stream and a read of the run, and at the run's end
waits for that thread to notice (its loop polls every 0.2 s). On this 2-core machine that was
0.2 s of every chest X-ray run (``python -m bench.run_overhead``: 0.05 s before the run's
engine started, up to 0.2 s after its final state).

:func:`shared_suspension_observer` keeps one such observer (Prefect's own
``FlowRunSuspendingObserver``, in a thread of its own, so a sync task holding the worker's
loop does not stop it) for as long as the worker runs, and hands each run to it: the run's
current state is read before it starts, as Prefect's does, and a Suspend marks the run's
suspension request, which the engine raises at the next task, exactly as before. Should the
shared observer be unavailable, a run falls back to Prefect's per-run observer.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from typing import Any
from uuid import UUID

log = logging.getLogger(__name__)

# how long a run waits for the shared observer to start before it uses Prefect's own
START_SECONDS = 10.0
# The Prefect releases whose engine internals this was written against (the function it
# stands in for, the observer and the suspension request); with any other the engine's own
# per-run observer runs unchanged.
SUPPORTED_VERSIONS = ("3.9.",)


class SharedSuspensionObserver:
    def __init__(self, per_run: Any) -> None:
        self._per_run = per_run  # Prefect's observe_flow_run_suspension
        self._context = contextvars.copy_context()  # the worker's Prefect settings
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._observer: Any = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._requests: dict[UUID, Any] = {}

    def _mark_suspended(self, flow_run_id: UUID, state: Any) -> None:
        from prefect._flow_run_suspension import mark_flow_run_suspension_requested

        if not mark_flow_run_suspension_requested(flow_run_id, state):
            request = self._requests.get(flow_run_id)
            if request is not None:
                request.mark_requested(state)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            from prefect._internal.observers import FlowRunSuspendingObserver

            async with FlowRunSuspendingObserver(on_suspended=self._mark_suspended) as observer:
                self._loop = asyncio.get_running_loop()
                self._observer = observer
                self._ready.set()
                await self._stop.wait()
        finally:
            self._observer = None
            self._ready.set()

    def _run(self) -> None:
        try:
            self._context.run(asyncio.run, self._main())
        except Exception:
            log.debug("the shared suspension observer stopped", exc_info=True)

    def _started(self) -> bool:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._ready.clear()
                self._thread = threading.Thread(
                    target=self._run, name="suspension observer", daemon=True
                )
                self._thread.start()
        self._ready.wait(START_SECONDS)
        return self._observer is not None

    @contextmanager
    def observe(self, flow_run_id: UUID, suspension_request: Any) -> Iterator[None]:
        if not self._started():
            with self._per_run(flow_run_id, suspension_request):
                yield
            return
        observer, loop = self._observer, self._loop
        assert loop is not None
        self._requests[flow_run_id] = suspension_request
        # Prefect's observer reads the run's current state before the run goes on
        watching: Future[None] = asyncio.run_coroutine_threadsafe(
            observer.watch_flow_run_id(flow_run_id), loop
        )
        watching.result()
        try:
            yield
        finally:
            self._requests.pop(flow_run_id, None)
            loop.call_soon_threadsafe(observer.remove_in_flight_flow_run_id, flow_run_id)

    def close(self) -> None:
        with self._lock:
            thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        with suppress(RuntimeError):  # the loop has ended already
            loop.call_soon_threadsafe(stop.set)
        thread.join(5)


@contextmanager
def shared_suspension_observer() -> Iterator[None]:
    """Every flow run of this process watched by one observer, until the block ends (with
    a Prefect release outside :data:`SUPPORTED_VERSIONS`, Prefect's per-run observer)."""
    import prefect
    import prefect.flow_engine as flow_engine

    per_run = getattr(flow_engine, "observe_flow_run_suspension", None)
    if per_run is None or not prefect.__version__.startswith(SUPPORTED_VERSIONS):
        yield
        return
    shared = SharedSuspensionObserver(per_run)
    flow_engine.observe_flow_run_suspension = shared.observe  # type: ignore[assignment]
    try:
        yield
    finally:
        flow_engine.observe_flow_run_suspension = per_run
        shared.close()
