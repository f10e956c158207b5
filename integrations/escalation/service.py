"""The long-running escalation service: re-send and escalate loop plus the HTTP server (I/O).

Several services may run against one database: an escalation is claimed (``FOR UPDATE SKIP
LOCKED`` and a lease) before it is acted on, so each due re-send happens once.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

import uvicorn

from integrations.escalation.engine import EscalationEngine
from integrations.escalation.web import create_app

log = logging.getLogger(__name__)


class EscalationService:
    def __init__(
        self, engine: EscalationEngine, host: str | None = None, port: int | None = None
    ) -> None:
        self.engine = engine
        settings = engine.escalation
        self.host = host or settings.listen_host
        self.port = settings.listen_port if port is None else port
        self.poll_seconds = settings.poll_seconds
        self.stop_event = threading.Event()
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(engine),
                host=self.host,
                port=self.port,
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        self._threads: list[threading.Thread] = []

    def loop(self) -> None:
        """Act on due escalations every ``poll_seconds`` until stopped."""
        while not self.stop_event.is_set():
            try:
                self.engine.tick()
            except Exception:
                log.exception("escalation pass failed; retrying")
                self.stop_event.wait(2.0)
            self.stop_event.wait(self.poll_seconds)

    @property
    def bound_port(self) -> int:
        """The port actually listened on (useful with port 0)."""
        for server in getattr(self.server, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.port

    def start(self, timeout: float = 10.0) -> None:
        """Run loop and HTTP server in background threads; return once the server listens."""
        loop = threading.Thread(target=self.loop, name="escalation-loop", daemon=True)
        http = threading.Thread(target=self.server.run, name="escalation-http", daemon=True)
        self._threads = [loop, http]
        loop.start()
        http.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not http.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"escalation service did not start on {self.host}:{self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.stop_event.set()
        self.server.should_exit = True
        for thread in self._threads:
            thread.join(10)

    def run(self) -> None:
        """Serve in the foreground until SIGINT or SIGTERM; the loop runs beside it.

        uvicorn shuts down gracefully on those signals and then re-raises them to the handlers
        it found; ours just stop the loop, so the process exits 0 after a clean stop.
        """

        def stop(signum: int, frame: object) -> None:
            self.stop_event.set()
            self.server.should_exit = True

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, stop)
        loop = threading.Thread(target=self.loop, name="escalation-loop", daemon=True)
        loop.start()
        try:
            self.server.run()
        finally:
            self.stop_event.set()
            loop.join(10)
