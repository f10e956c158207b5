"""Escalations of Critical findings in PostgreSQL: one row per idempotency key, every attempt
and event beside it (I/O).

An escalation is written (and claimed by its writer) before anything is sent, so a crash
between the two leaves a row the escalation service takes over when the claim expires. All
times come from the database clock, like ``studies.closed_at``, so "seconds from study close
to first notification" is one clock's difference.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from integrations.db.connection import Database

ACTIVE_STATES = ("open", "notified")


@dataclass(frozen=True)
class EscalationRecord:
    idempotency_key: str
    study_instance_uid: str
    generation: int
    analyzer: str
    finding: str
    finding_code: str
    tier: str
    tier_rule: str
    probability: float
    team: str
    team_rule: str
    state: str
    ack_token: str | None
    level: int
    round: int
    notifications_sent: int
    delivery_failures: int
    study_closed_at: datetime | None
    created_at: datetime
    next_action_at: datetime | None
    first_notified_at: datetime | None
    first_notification_seconds: float | None
    first_notification_late: bool | None
    first_channel: str | None
    last_notified_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    acknowledged_via: str | None
    clinical_use: bool = True

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EscalationRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in row.items() if key in names})


@dataclass(frozen=True)
class Acknowledgement:
    record: EscalationRecord
    newly_acknowledged: bool
    also_acknowledged: tuple[str, ...] = ()  # other open escalations of the study and team


class EscalationStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def open(
        self,
        *,
        idempotency_key: str,
        study_instance_uid: str,
        generation: int,
        analyzer: str,
        finding: str,
        finding_code: str,
        tier: str,
        tier_rule: str,
        probability: float,
        clinical_use: bool = True,
        team: str,
        team_rule: str,
        ack_token: str,
        study_closed_at: datetime | None,
        claimed_by: str,
        claim_seconds: float,
    ) -> EscalationRecord | None:
        """Record an escalation, claimed by the caller; None when this key exists already
        (a retry or rerun of the same study and finding)."""
        with self.database.connection() as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO escalations (idempotency_key, study_instance_uid, generation,"
                " analyzer, finding, finding_code, tier, tier_rule, probability, team, team_rule,"
                " state, ack_token, study_closed_at, claimed_by, claimed_until, next_action_at,"
                " clinical_use)"
                " VALUES (%(key)s, %(study)s, %(generation)s, %(analyzer)s, %(finding)s,"
                " %(code)s, %(tier)s, %(tier_rule)s, %(probability)s, %(team)s, %(team_rule)s,"
                " %(state)s, %(token)s, %(closed)s, %(claimed_by)s,"
                " clock_timestamp() + make_interval(secs => %(claim)s),"
                " CASE WHEN %(state)s = 'open'"
                "      THEN clock_timestamp() + make_interval(secs => %(claim)s) END,"
                " %(clinical_use)s)"
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
                {
                    "key": idempotency_key,
                    "study": study_instance_uid,
                    "generation": generation,
                    "analyzer": analyzer,
                    "finding": finding,
                    "code": finding_code,
                    "tier": tier,
                    "tier_rule": tier_rule,
                    "probability": probability,
                    "team": team,
                    "team_rule": team_rule,
                    "state": "open" if team else "unroutable",
                    "token": ack_token,
                    "closed": study_closed_at,
                    "claimed_by": claimed_by,
                    "claim": claim_seconds,
                    "clinical_use": clinical_use,
                },
            ).fetchone()
            if row is None:
                return None
            self._event(
                conn,
                idempotency_key,
                "opened",
                {"team": team, "team_rule": team_rule, "tier_rule": tier_rule},
            )
        return EscalationRecord.from_row(row)

    def claim_due(
        self, claimed_by: str, claim_seconds: float, limit: int = 20
    ) -> list[EscalationRecord]:
        """Take escalations whose next action is due and that nobody holds."""
        with self.database.connection() as conn:
            rows = conn.execute(
                "UPDATE escalations SET claimed_by = %(by)s,"
                " claimed_until = clock_timestamp() + make_interval(secs => %(claim)s),"
                " updated_at = clock_timestamp()"
                " WHERE idempotency_key IN ("
                "   SELECT idempotency_key FROM escalations"
                "   WHERE state IN ('open', 'notified') AND next_action_at <= clock_timestamp()"
                "     AND (claimed_until IS NULL OR claimed_until < clock_timestamp())"
                "   ORDER BY next_action_at FOR UPDATE SKIP LOCKED LIMIT %(limit)s)"
                " RETURNING *",
                {"by": claimed_by, "claim": claim_seconds, "limit": limit},
            ).fetchall()
        return [EscalationRecord.from_row(row) for row in rows]

    def record_attempt(
        self,
        idempotency_key: str,
        *,
        level: int,
        round: int,
        channel: str,
        attempt: int,
        recipients: list[str],
        outcome: str,
        detail: str,
        started_at: datetime,
    ) -> None:
        with self.database.connection() as conn:
            conn.execute(
                "INSERT INTO escalation_attempts (idempotency_key, level, round, channel, attempt,"
                " recipients, outcome, detail, started_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    idempotency_key,
                    level,
                    round,
                    channel,
                    attempt,
                    recipients,
                    outcome,
                    detail[:2000],
                    started_at,
                ),
            )

    def record_delivered(
        self,
        idempotency_key: str,
        *,
        level: int,
        round: int,
        channel: str,
        next_action_in_seconds: float,
        deadline_seconds: float,
    ) -> EscalationRecord:
        """Someone was reached: the first time, the latency from study close is stored."""
        with self.database.connection() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE escalations SET"
                " state = CASE WHEN state = 'open' THEN 'notified' ELSE state END,"
                " first_notified_at = COALESCE(first_notified_at, clock_timestamp()),"
                " first_notification_seconds = COALESCE(first_notification_seconds,"
                "   EXTRACT(EPOCH FROM clock_timestamp() - study_closed_at)::double precision),"
                " first_notification_late = COALESCE(first_notification_late,"
                "   EXTRACT(EPOCH FROM clock_timestamp() - study_closed_at) > %(deadline)s),"
                " first_channel = COALESCE(first_channel, %(channel)s),"
                " last_notified_at = clock_timestamp(),"
                " notifications_sent = notifications_sent + 1,"
                " level = %(level)s, round = %(round)s,"
                " next_action_at = CASE WHEN state IN ('open', 'notified')"
                "   THEN clock_timestamp() + make_interval(secs => %(next)s) END,"
                " claimed_by = NULL, claimed_until = NULL, updated_at = clock_timestamp()"
                " WHERE idempotency_key = %(key)s RETURNING *",
                {
                    "key": idempotency_key,
                    "level": level,
                    "round": round,
                    "channel": channel,
                    "next": next_action_in_seconds,
                    "deadline": deadline_seconds,
                },
            ).fetchone()
            record = EscalationRecord.from_row(row)
            self._event(
                conn,
                idempotency_key,
                "delivered",
                {"level": level, "round": round, "channel": channel},
            )
        return record

    def record_undelivered(
        self, idempotency_key: str, *, level: int, round: int, retry_in_seconds: float
    ) -> EscalationRecord:
        """No channel reached anyone this time: try again soon (the service does)."""
        with self.database.connection() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE escalations SET delivery_failures = delivery_failures + 1,"
                " level = %(level)s, round = %(round)s,"
                " next_action_at = CASE WHEN state IN ('open', 'notified')"
                "   THEN clock_timestamp() + make_interval(secs => %(retry)s) END,"
                " claimed_by = NULL, claimed_until = NULL, updated_at = clock_timestamp()"
                " WHERE idempotency_key = %(key)s RETURNING *",
                {"key": idempotency_key, "level": level, "round": round, "retry": retry_in_seconds},
            ).fetchone()
            self._event(conn, idempotency_key, "undelivered", {"level": level, "round": round})
        return EscalationRecord.from_row(row)

    def mark_exhausted(self, idempotency_key: str) -> None:
        with self.database.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE escalations SET state = 'exhausted', next_action_at = NULL,"
                " claimed_by = NULL, claimed_until = NULL, updated_at = clock_timestamp()"
                " WHERE idempotency_key = %s AND state IN ('open', 'notified')",
                (idempotency_key,),
            )
            self._event(conn, idempotency_key, "exhausted", {})

    def release(self, idempotency_key: str) -> None:
        with self.database.connection() as conn:
            conn.execute(
                "UPDATE escalations SET claimed_by = NULL, claimed_until = NULL"
                " WHERE idempotency_key = %s",
                (idempotency_key,),
            )

    def acknowledge(self, ack_token: str, *, by: str, via: str) -> Acknowledgement | None:
        """Record who acknowledged and when; also closes the study's other open escalations
        to the same team (one person, one patient). None for an unknown token."""
        with self.database.connection() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE escalations SET state = 'acknowledged', acknowledged_at = clock_timestamp(),"
                " acknowledged_by = %s, acknowledged_via = %s, next_action_at = NULL,"
                " updated_at = clock_timestamp()"
                " WHERE ack_token = %s AND state IN ('open', 'notified', 'exhausted') RETURNING *",
                (by, via, ack_token),
            ).fetchone()
            if row is None:
                existing = conn.execute(
                    "SELECT * FROM escalations WHERE ack_token = %s", (ack_token,)
                ).fetchone()
                if existing is None:
                    return None
                return Acknowledgement(EscalationRecord.from_row(existing), False)
            record = EscalationRecord.from_row(row)
            self._event(conn, record.idempotency_key, "acknowledged", {"by": by, "via": via})
            siblings = conn.execute(
                "UPDATE escalations SET state = 'acknowledged', acknowledged_at = clock_timestamp(),"
                " acknowledged_by = %s, acknowledged_via = %s, next_action_at = NULL,"
                " updated_at = clock_timestamp()"
                " WHERE study_instance_uid = %s AND team = %s AND idempotency_key <> %s"
                "   AND state IN ('open', 'notified', 'exhausted') RETURNING idempotency_key",
                (
                    by,
                    f"with {record.idempotency_key}",
                    record.study_instance_uid,
                    record.team,
                    record.idempotency_key,
                ),
            ).fetchall()
            for sibling in siblings:
                self._event(
                    conn,
                    sibling["idempotency_key"],
                    "acknowledged",
                    {"by": by, "via": f"with {record.idempotency_key}"},
                )
        return Acknowledgement(record, True, tuple(s["idempotency_key"] for s in siblings))

    def record_event(self, idempotency_key: str, kind: str, detail: dict[str, Any]) -> None:
        with self.database.connection() as conn:
            self._event(conn, idempotency_key, kind, detail)

    @staticmethod
    def _event(conn: Any, idempotency_key: str, kind: str, detail: dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO escalation_events (idempotency_key, kind, detail) VALUES (%s, %s, %s)",
            (idempotency_key, kind, Jsonb(detail)),
        )

    # -- reading ----------------------------------------------------------------------------

    def get(self, idempotency_key: str) -> EscalationRecord | None:
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT * FROM escalations WHERE idempotency_key = %s", (idempotency_key,)
            ).fetchone()
        return None if row is None else EscalationRecord.from_row(row)

    def by_token(self, ack_token: str) -> EscalationRecord | None:
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT * FROM escalations WHERE ack_token = %s", (ack_token,)
            ).fetchone()
        return None if row is None else EscalationRecord.from_row(row)

    def for_study(self, study_instance_uid: str) -> list[EscalationRecord]:
        with self.database.connection() as conn:
            rows = conn.execute(
                "SELECT * FROM escalations WHERE study_instance_uid = %s ORDER BY created_at",
                (study_instance_uid,),
            ).fetchall()
        return [EscalationRecord.from_row(row) for row in rows]

    def active(self, limit: int = 200) -> list[EscalationRecord]:
        with self.database.connection() as conn:
            rows = conn.execute(
                "SELECT * FROM escalations WHERE state IN ('open', 'notified', 'exhausted',"
                " 'unroutable') ORDER BY created_at LIMIT %s",
                (limit,),
            ).fetchall()
        return [EscalationRecord.from_row(row) for row in rows]

    def attempts(self, idempotency_key: str) -> list[dict[str, Any]]:
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT * FROM escalation_attempts WHERE idempotency_key = %s ORDER BY id",
                (idempotency_key,),
            ).fetchall()

    def events(self, idempotency_key: str) -> list[dict[str, Any]]:
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT * FROM escalation_events WHERE idempotency_key = %s ORDER BY id",
                (idempotency_key,),
            ).fetchall()

    def latency_summary(self) -> dict[str, Any]:
        """Counts by state and the study close → first notification distribution."""
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS total,"
                " count(*) FILTER (WHERE state = 'open') AS undelivered,"
                " count(*) FILTER (WHERE state = 'notified') AS unacknowledged,"
                " count(*) FILTER (WHERE state = 'acknowledged') AS acknowledged,"
                " count(*) FILTER (WHERE state = 'exhausted') AS exhausted,"
                " count(*) FILTER (WHERE state = 'unroutable') AS unroutable,"
                " count(*) FILTER (WHERE first_notification_late) AS late,"
                " count(first_notification_seconds) AS measured,"
                " coalesce(sum(first_notification_seconds), 0) AS seconds_sum,"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY first_notification_seconds) AS p50,"
                " percentile_cont(0.95) WITHIN GROUP (ORDER BY first_notification_seconds) AS p95,"
                " max(first_notification_seconds) AS max"
                " FROM escalations"
            ).fetchone()
        return dict(row)
