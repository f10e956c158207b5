"""Shared pytest configuration: one fixture plugin per real peer (see tests/fix_*.py)."""

pytest_plugins = [
    "tests.fix_postgres",
    "tests.fix_orthanc",
    "tests.fix_dcmtk",
    "tests.fix_prefect",
    "tests.fix_models",
    "tests.fix_notify",
    "tests.fix_hl7",
]
