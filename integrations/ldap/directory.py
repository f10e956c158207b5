"""Log people in against LDAP or Active Directory, and read their groups (I/O).

The password is checked by binding as the user (simple bind, over StartTLS or ``ldaps://``
when configured); pacsflow never sees or stores a password hash. Groups are the
``groupOfNames`` entries under ``group_search_base`` whose ``member`` is the user's DN, plus
the user's own ``memberOf`` values (Active Directory, OpenLDAP's memberof overlay). A user's
groups are cached for ``group_cache_seconds`` so a busy ward terminal does not search the
directory at every login.

Errors: a wrong password or an unknown user raises :class:`PeerRejectedError` (the same
message for both, so nobody can probe which names exist); a directory that cannot be reached
raises :class:`PeerUnavailableError`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import ldap
import ldap.dn
import ldap.filter

from integrations.errors import ConfigError, PeerRejectedError, PeerUnavailableError
from integrations.settings import LdapSettings

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "unknown user name or wrong password"


@dataclass(frozen=True)
class DirectoryUser:
    username: str
    dn: str
    display_name: str
    groups: tuple[str, ...]


class Directory:
    def __init__(self, settings: LdapSettings) -> None:
        if not settings.url:
            raise ConfigError("ldap.url is empty: the console needs a directory to log in with")
        if not settings.user_dn_template and not settings.user_search_base:
            raise ConfigError("set ldap.user_dn_template or ldap.user_search_base")
        self.settings = settings
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def _connect(self) -> ldap.ldapobject.LDAPObject:
        settings = self.settings
        conn = ldap.initialize(settings.url)
        conn.set_option(ldap.OPT_REFERRALS, 0)  # AD referrals would bind anonymously elsewhere
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, settings.timeout_seconds)
        conn.set_option(ldap.OPT_TIMEOUT, settings.timeout_seconds)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        if settings.ca_file:
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, settings.ca_file)
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        if settings.start_tls and settings.url.startswith("ldap://"):
            conn.start_tls_s()
        return conn

    def _user_dn(self, username: str) -> tuple[str, dict[str, list[bytes]]]:
        settings = self.settings
        if settings.user_dn_template:
            return settings.user_dn_template.format(username=ldap.dn.escape_dn_chars(username)), {}
        conn = self._connect()
        try:
            if settings.bind_dn:
                conn.simple_bind_s(
                    settings.bind_dn, os.environ.get(settings.bind_credentials_env, "")
                )
            found = conn.search_s(
                settings.user_search_base,
                ldap.SCOPE_SUBTREE,
                settings.user_filter.format(username=ldap.filter.escape_filter_chars(username)),
                [settings.display_name_attribute, "memberOf"],
            )
        finally:
            conn.unbind_s()
        entries = [(dn, attrs) for dn, attrs in found if dn]
        if len(entries) != 1:
            raise PeerRejectedError(INVALID_CREDENTIALS)
        return entries[0]

    def authenticate(self, username: str, password: str) -> DirectoryUser:
        """Bind as the user; return who they are and their groups."""
        username = username.strip()
        # An empty password is an unauthenticated bind, which some servers accept as success.
        if not username or not password:
            raise PeerRejectedError(INVALID_CREDENTIALS)
        try:
            dn, attributes = self._user_dn(username)
            conn = self._connect()
            try:
                conn.simple_bind_s(dn, password)
                found = conn.search_s(
                    dn,
                    ldap.SCOPE_BASE,
                    "(objectClass=*)",
                    [self.settings.display_name_attribute, "memberOf"],
                )
                if found:
                    attributes = found[0][1]
                groups = self._groups(conn, dn, attributes)
            finally:
                conn.unbind_s()
        except (ldap.INVALID_CREDENTIALS, ldap.NO_SUCH_OBJECT, ldap.UNWILLING_TO_PERFORM):
            raise PeerRejectedError(INVALID_CREDENTIALS) from None
        except (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR) as error:
            raise PeerUnavailableError(
                f"the directory {self.settings.url} cannot be reached: {_describe(error)}"
            ) from None
        except ldap.LDAPError as error:
            raise PeerUnavailableError(
                f"the directory {self.settings.url} failed: {_describe(error)}"
            ) from None
        name_values = attributes.get(self.settings.display_name_attribute) or [b""]
        display_name = name_values[0].decode("utf-8", "replace") or username
        return DirectoryUser(username, dn, display_name, groups)

    def _groups(
        self, conn: ldap.ldapobject.LDAPObject, dn: str, attributes: dict[str, list[bytes]]
    ) -> tuple[str, ...]:
        key = dn.lower()
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached and now - cached[0] < self.settings.group_cache_seconds:
            return cached[1]
        groups = {value.decode("utf-8", "replace") for value in attributes.get("memberOf", [])}
        if self.settings.group_search_base:
            found = conn.search_s(
                self.settings.group_search_base,
                ldap.SCOPE_SUBTREE,
                self.settings.group_filter.format(user_dn=ldap.filter.escape_filter_chars(dn)),
                ["cn"],
            )
            groups.update(group_dn for group_dn, _ in found if group_dn)
        result = tuple(sorted(groups))
        with self._lock:
            self._cache[key] = (now, result)
        return result


def _describe(error: ldap.LDAPError) -> str:
    detail = error.args[0] if error.args else {}
    if isinstance(detail, dict):
        return str(detail.get("desc", "")) + (f" ({detail['info']})" if detail.get("info") else "")
    return str(error)
