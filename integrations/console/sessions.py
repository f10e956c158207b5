"""Console sessions and acknowledge links as signed, expiring values (pure).

A session is a cookie signed with the site's secret (itsdangerous, HMAC-SHA1 over a
timestamped payload): who the person is, their roles as read from the directory at login, a
CSRF token, and when it started. Every request re-signs it, so the signature's timestamp is
the last activity and ``idle_seconds`` is an idle timeout; ``max_seconds`` ends it whatever
the activity. Nothing is kept on the server, so a directory that goes down leaves open
sessions working until they expire, and the escalation service can check a console login
with the same secret.

An acknowledge link carries the escalation's ack token signed with a different salt and a
time limit, so a link copied from a page stops working after ``ack_link_minutes``.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from integrations.ldap.rbac import Role, parse_roles

SESSION_COOKIE = "pacsflow_session"
MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class Session:
    username: str
    display_name: str
    roles: frozenset[Role]
    csrf_token: str
    started_at: float

    @property
    def who(self) -> str:
        """How an acknowledgement or audit record names the person."""
        if self.display_name and self.display_name != self.username:
            return f"{self.username} ({self.display_name})"
        return self.username


class SessionSigner:
    def __init__(self, secret: str, *, idle_seconds: float, max_seconds: float) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"the session secret must be at least {MIN_SECRET_LENGTH} characters")
        self._sessions = URLSafeTimedSerializer(secret, salt="pacsflow-console-session")
        self._ack_links = URLSafeTimedSerializer(secret, salt="pacsflow-ack-link")
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds

    def new_session(self, username: str, display_name: str, roles: Iterable[Role]) -> Session:
        return Session(
            username=username,
            display_name=display_name,
            roles=frozenset(roles),
            csrf_token=secrets.token_urlsafe(24),
            started_at=time.time(),
        )

    def dump(self, session: Session) -> str:
        return self._sessions.dumps(
            {
                "u": session.username,
                "n": session.display_name,
                "r": sorted(role.value for role in session.roles),
                "c": session.csrf_token,
                "s": session.started_at,
            }
        )

    def load(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in ``cookie``, or None when missing, forged, idle too long or too old."""
        if not cookie:
            return None
        try:
            data = self._sessions.loads(cookie, max_age=int(self.idle_seconds))
            session = Session(
                username=str(data["u"]),
                display_name=str(data["n"]),
                roles=parse_roles(data["r"]),
                csrf_token=str(data["c"]),
                started_at=float(data["s"]),
            )
        except (BadSignature, SignatureExpired, KeyError, TypeError, ValueError):
            return None
        if (now or time.time()) - session.started_at > self.max_seconds or not session.roles:
            return None
        return session

    def ack_link_token(self, ack_token: str) -> str:
        return self._ack_links.dumps(ack_token)

    def ack_token(self, signed: str, max_seconds: float) -> str | None:
        """The escalation's ack token, or None when the link is forged or expired."""
        try:
            return str(self._ack_links.loads(signed, max_age=int(max_seconds)))
        except (BadSignature, SignatureExpired):
            return None


def csrf_matches(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf_token, str(submitted))
