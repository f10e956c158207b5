"""Schema migrations: numbered SQL files applied once each, in order (I/O).

``migrations/NNN_name.sql`` files are applied inside one transaction each and recorded in
``schema_migrations``; an advisory lock lets several processes start at once safely.
A shipped migration is never edited: a change is a new file.
"""

from __future__ import annotations

import logging
import re
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

MIGRATION_LOCK_KEY = 0x70616373  # "pacs"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def available_migrations() -> list[tuple[str, str]]:
    """(version, sql) for every migration file shipped with the package, in order."""
    folder = resources.files("integrations.db") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply the migrations not yet applied; return the versions applied now."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, sql in available_migrations():
            if version in done:
                continue
            conn.execute(sql)  # type: ignore[arg-type]  # trusted file shipped with the package
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied_now.append(version)
            log.info("applied migration %s", version)
    return applied_now
