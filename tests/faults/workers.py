"""Warm workers as separate ``pacsflow worker`` processes, and a PACS that never answers (I/O)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from integrations.settings import Settings, settings_environment

REPO_ROOT = Path(__file__).resolve().parents[2]


def worker_env(settings: Settings, prefect_api_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a worker process configured exactly like ``settings``."""
    env = {
        **os.environ,
        **settings_environment(settings),
        "PYTHONPATH": str(REPO_ROOT),
        "PREFECT_API_URL": prefect_api_url,
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    secret = settings.escalation.webhook_secret
    if secret is not None:  # secrets never travel through settings_environment
        env["PACSFLOW_ESCALATION__WEBHOOK_SECRET"] = secret.get_secret_value()
    return {**env, **overrides}


def start_worker(
    name: str, env: dict[str, str], folder: Path, command: tuple[str, ...] = ()
) -> subprocess.Popen:
    """``pacsflow worker --name NAME`` (or another ``command``), its output in NAME.log."""
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / f"{name}.log", "wb")  # noqa: SIM115 - the child holds it
    return subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", *(command or ("worker", "--name", name))],
        env=env,
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections into its backlog and never answers a byte."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


class SwitchablePacsLink:
    """A TCP proxy in front of the PACS that either forwards or black-holes connections.

    ``hold``: connections are accepted and never answered (a PACS that hangs); ``forward``:
    new connections reach the PACS. The network is cut for real, no mock involved.
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.forwarding = False
        self._listener = self._listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._piped: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        return listener

    def __enter__(self) -> SwitchablePacsLink:
        self._thread.start()
        return self

    def kill(self) -> None:
        """The peer's process dies: its connections break and new ones are refused."""
        with suppress(OSError):  # wakes the accepting thread; a bare close would not
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.cut()

    def revive(self) -> None:
        """The peer is back on the same port, forwarding."""
        self._listener = self._listen(self.port)
        self.forwarding = True
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """Stop forwarding, and break the connections already forwarded (kept-alive ones)."""
        self.forwarding = False
        for end in self._piped:
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        self._piped.clear()

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._listener.close()
        for held in self._held:
            held.close()

    def _accept(self) -> None:
        listener = self._listener
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if not self.forwarding:
                self._held.append(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            self._piped += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=_pipe, args=(source, target), daemon=True).start()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")
