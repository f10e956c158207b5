"""Child processes of ``pacsflow serve``: started, watched, restarted, stopped in order (I/O).

A child that exits unexpectedly is restarted after a growing delay (1 s up to 60 s) so a
crash loop cannot spin the CPU; every exit and restart is logged with its status.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from integrations.metrics import MULTIPROCESS_ENV, process_exited

log = logging.getLogger("pacsflow.supervisor")

MAX_RESTART_DELAY_SECONDS = 60.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env)
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)


def pacsflow_command(*args: str) -> list[str]:
    """argv for a pacsflow subcommand run with this interpreter."""
    return [sys.executable, "-m", "deployments.cli", *args]


class Supervisor:
    def __init__(self) -> None:
        self.children: list[Child] = []

    def add(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
        child = Child(name, list(argv), {**os.environ, **(env or {})})
        child.start()
        self.children.append(child)
        return child

    def check(self) -> None:
        """Restart children that exited, with backoff."""
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is None:
                if now >= child.next_start:
                    child.start()
                continue
            code = process.poll()
            if code is None:
                if now - child.started_at > 120:
                    child.restarts = 0  # ran long enough: forget earlier crashes
                continue
            process_exited(process.pid, child.env.get(MULTIPROCESS_ENV))
            delay = min(MAX_RESTART_DELAY_SECONDS, 2.0**child.restarts)
            log.error("%s exited with status %s; restarting in %.0f s", child.name, code, delay)
            child.restarts += 1
            child.process = None
            child.next_start = now + delay

    def stop(self, timeout: float = 15.0) -> None:
        """Stop children in reverse start order, each before the next: the Prefect server,
        started first, goes last, so the others finish their runs against a live API.
        SIGINT (Prefect workers ignore SIGTERM), then SIGKILL after ``timeout``."""
        for child in reversed(self.children):
            process = child.process
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", child.name)
                process.kill()
                process.wait()
