"""Run dicom3tools ``dciodvfy`` on encoded DICOM bytes (test helper, I/O).

``dciodvfy`` exits 1 on any ``Error -`` line and 0 on warnings only; both are reported. A
missing ``dciodvfy`` fails the test: conformance is never skipped.
Tests call :func:`assert_conformant`, which fails on any error and on warnings not listed as
expected (the synthetic sources' own quirks, named in the call).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

DCIODVFY = shutil.which("dciodvfy")

# dciodvfy warnings every pacsflow result object may carry, and why they are fine:
# - 99PACSFLOW is our private coding scheme (declared in Coding Scheme Identification);
# - Device UID in the Contributing Equipment Sequence is in current DICOM (and IHE AIR asks
#   for it) but not in the dicom3tools release Debian ships, which then calls the object
#   "Standard Extended".
RESULT_OBJECT_WARNINGS = (
    r"Unrecognized defined term <99PACSFLOW>",
    r"\(0x0018,0x1002\) UI Device UID",
    r"this is a Standard Extended SOP Class",
)
# Parametric Maps: Image Type and Frame Type value 4 QUANTITY is newer than that release too.
PARAMETRIC_MAP_WARNINGS = (*RESULT_OBJECT_WARNINGS, r"Unrecognized defined term <QUANTITY>")


@dataclass(frozen=True)
class Verification:
    iod: str
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    returncode: int


def verify(data: bytes) -> Verification:
    """dciodvfy's verdict on one object in DICOM File Format."""
    if DCIODVFY is None:
        pytest.fail("dicom3tools dciodvfy is not installed (deployments/setup/system-packages.sh)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "object.dcm"
        path.write_bytes(data)
        completed = subprocess.run(
            [DCIODVFY, str(path)], capture_output=True, text=True, timeout=60, check=False
        )
    lines = (completed.stdout + completed.stderr).splitlines()
    # An error about one element comes after its tag: "(0x0028,0x3006) ... - Error - ..."
    errors = tuple(line for line in lines if line.startswith("Error -") or " - Error - " in line)
    warnings = tuple(line for line in lines if line.startswith("Warning -"))
    iod = next(
        (
            line.strip()
            for line in lines
            if line and not line.startswith(("Error", "Warning", "(0x")) and " - " not in line
        ),
        "",
    )
    return Verification(iod=iod, errors=errors, warnings=warnings, returncode=completed.returncode)


def assert_conformant(data: bytes, *, allowed_warnings: tuple[str, ...] = ()) -> Verification:
    """Fail on any ``Error -`` line, and on warnings that match none of ``allowed_warnings``."""
    result = verify(data)
    assert not result.errors, f"dciodvfy ({result.iod}) errors:\n" + "\n".join(result.errors)
    assert result.returncode == 0, f"dciodvfy exited {result.returncode}"
    unexpected = [
        warning
        for warning in result.warnings
        if not any(re.search(pattern, warning) for pattern in allowed_warnings)
    ]
    assert not unexpected, f"dciodvfy ({result.iod}) warnings:\n" + "\n".join(unexpected)
    return result
