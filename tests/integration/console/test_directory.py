"""The directory against a real slapd: bind as the user, groups from groupOfNames and from
memberOf, search-based user lookup, the short group cache (I/O)."""

from __future__ import annotations

import pytest

from integrations.errors import ConfigError, PeerRejectedError, PeerUnavailableError
from integrations.ldap.directory import Directory
from integrations.settings import LdapSettings
from tests.fix_slapd import PEOPLE, ROLE_GROUPS, SUFFIX


def test_groups_from_member_search_and_from_member_of(running_slapd):
    by_member = Directory(LdapSettings(**running_slapd.ldap_settings()))
    user = by_member.authenticate("both", "bothpw")
    assert user.dn == f"uid=both,{PEOPLE}" and user.display_name == "Dr Bo Both"
    assert set(user.groups) == {ROLE_GROUPS["emergency_physician"], ROLE_GROUPS["it_admin"]}
    member_of_only = Directory(LdapSettings(**running_slapd.ldap_settings(group_search_base="")))
    assert set(member_of_only.authenticate("both", "bothpw").groups) == set(user.groups)


def test_search_based_lookup_and_refusals(running_slapd):
    directory = Directory(
        LdapSettings(
            **running_slapd.ldap_settings(
                user_dn_template="", user_search_base=SUFFIX, user_filter="(uid={username})"
            )
        )
    )
    assert directory.authenticate("rad", "radpw").groups == (ROLE_GROUPS["radiologist"],)
    for username, password in (("rad", "wrong"), ("ghost", "x"), ("rad", ""), ("*", "x")):
        with pytest.raises(PeerRejectedError, match="unknown user name or wrong password"):
            directory.authenticate(username, password)


def test_groups_are_cached_briefly(running_slapd):
    directory = Directory(LdapSettings(**running_slapd.ldap_settings(group_cache_seconds=60)))
    first = directory.authenticate("tech", "techpw").groups
    directory.settings = directory.settings.model_copy(update={"group_search_base": "ou=none"})
    assert directory.authenticate("tech", "techpw").groups == first  # from the cache


def test_directory_down_and_misconfigured(running_slapd):
    with pytest.raises(ConfigError):
        Directory(LdapSettings())
    directory = Directory(LdapSettings(**running_slapd.ldap_settings(timeout_seconds=2)))
    running_slapd.stop()
    try:
        with pytest.raises(PeerUnavailableError, match="cannot be reached"):
            directory.authenticate("rad", "radpw")
    finally:
        running_slapd.start()
    assert directory.authenticate("rad", "radpw").username == "rad"


@pytest.mark.parametrize("transport", ["start_tls", "ldaps"])
def test_start_tls_and_ldaps_with_the_site_ca(running_slapd, transport):
    overrides: dict[str, object] = {"ca_file": str(running_slapd.ca_file)}
    if transport == "ldaps":
        overrides["url"] = running_slapd.ldaps_url
    else:
        overrides["start_tls"] = True
    directory = Directory(LdapSettings(**running_slapd.ldap_settings(**overrides)))
    assert directory.authenticate("rad", "radpw").groups == (ROLE_GROUPS["radiologist"],)
    # a server certificate the configured CA did not sign is refused, never trusted
    untrusted = Directory(
        LdapSettings(**running_slapd.ldap_settings(**{**overrides, "ca_file": "/etc/hostname"}))
    )
    with pytest.raises(PeerUnavailableError):
        untrusted.authenticate("rad", "radpw")
