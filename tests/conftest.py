"""Shared pytest configuration: one fixture plugin per real peer (see tests/fix_*.py)."""

pytest_plugins = [
    "tests.fix_postgres",
]
