"""Shared pytest configuration: one fixture plugin per real peer (see tests/fix_*.py)."""

import os

# Before any plugin imports torch: spinning OpenMP threads stall on a busy 2-core machine
# (see models/__init__.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

pytest_plugins = [
    "tests.fix_postgres",
    "tests.fix_orthanc",
    "tests.fix_dcmtk",
    "tests.fix_prefect",
    "tests.fix_models",
    "tests.fix_notify",
    "tests.fix_hl7",
    "tests.fix_slapd",
    "tests.fix_syslog",
]
