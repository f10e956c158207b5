"""dcmtk command-line tools as the modality side of tests (I/O).

DCMTK leaves Nagle on unless ``TCP_NODELAY=1`` (RECIPES.md): without it each DIMSE exchange
stalls ~40 ms, so every call here sets it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def dcmtk(tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, *args], env=DCMTK_ENV, capture_output=True, text=True, timeout=timeout
    )


def echoscu(
    calling: str, called: str, port: int, host: str = "127.0.0.1"
) -> subprocess.CompletedProcess[str]:
    return dcmtk("echoscu", "-aet", calling, "-aec", called, host, str(port))


def storescu(
    calling: str,
    called: str,
    port: int,
    files: Sequence[Path],
    host: str = "127.0.0.1",
    *extra: str,
) -> subprocess.CompletedProcess[str]:
    return dcmtk(
        "storescu",
        "-aet",
        calling,
        "-aec",
        called,
        *extra,
        host,
        str(port),
        *[str(f) for f in files],
    )


@pytest.fixture(scope="session")
def dcmtk_tools() -> None:
    missing = [
        tool for tool in ("echoscu", "storescu", "findscu", "movescu") if shutil.which(tool) is None
    ]
    if missing:
        pytest.fail(f"dcmtk tools missing: {', '.join(missing)} (make setup installs them)")
