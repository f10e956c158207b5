"""Roles from directory groups, and what each role may see (pure).

Five roles, granted only through group membership (``[rbac]``: role -> group DNs). A person in
several mapped groups holds the union of their roles; a person in none holds no role and
cannot log in. Group DNs compare case-insensitively and without spaces around separators,
as LDAP does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum


class Role(StrEnum):
    RADIOLOGIST = "radiologist"
    EMERGENCY_PHYSICIAN = "emergency_physician"
    TECHNOLOGIST = "technologist"
    DEPARTMENT_HEAD = "department_head"
    IT_ADMIN = "it_admin"

    @property
    def label(self) -> str:
        return ROLE_TITLES[self]


ROLE_TITLES = {
    Role.RADIOLOGIST: "Radiologist",
    Role.EMERGENCY_PHYSICIAN: "Emergency Physician",
    Role.TECHNOLOGIST: "Radiology Technologist",
    Role.DEPARTMENT_HEAD: "Radiology Department Head",
    Role.IT_ADMIN: "IT Administrator",
}


class View(StrEnum):
    """What a route shows; each route asks for one view."""

    WORKLIST = "worklist"  # some form of the list: full, triage or status only
    STUDY = "study"  # a study's AI result: findings, probabilities, overlays, priors
    OVERLAY = "overlay"
    ANALYTICS = "analytics"
    SYSTEM = "system"
    AUDIT = "audit"
    ACKNOWLEDGE = "acknowledge"
    ESCALATIONS = "escalations"  # the escalation service's list (findings, study UIDs)
    METRICS = "metrics"  # the escalation service's counters (no patient data)


PERMISSIONS: Mapping[Role, frozenset[View]] = {
    Role.RADIOLOGIST: frozenset(
        {
            View.WORKLIST,
            View.STUDY,
            View.OVERLAY,
            View.ANALYTICS,
            View.ACKNOWLEDGE,
            View.ESCALATIONS,
            View.METRICS,
        }
    ),
    Role.EMERGENCY_PHYSICIAN: frozenset({View.WORKLIST, View.ACKNOWLEDGE}),
    Role.TECHNOLOGIST: frozenset({View.WORKLIST}),
    Role.DEPARTMENT_HEAD: frozenset({View.ANALYTICS}),
    Role.IT_ADMIN: frozenset({View.SYSTEM, View.AUDIT, View.METRICS}),
}


class WorklistDetail(StrEnum):
    """How much of the worklist a person sees (the most their roles allow)."""

    FULL = "full"  # patient, accession, tier, all positive findings, escalation state
    TRIAGE = "triage"  # patient, accession, tier and the primary finding only
    STATUS = "status"  # processing status only: no finding, no tier


def normalize_dn(dn: str) -> str:
    """``CN=Radiologists, OU=Groups,DC=h`` and ``cn=radiologists,ou=groups,dc=h`` are one."""
    return re.sub(r"\s*([,=+])\s*", r"\1", dn.strip()).lower()


def roles_for_groups(
    group_dns: Iterable[str], mapping: Mapping[Role, Iterable[str]]
) -> frozenset[Role]:
    """The union of the roles whose groups the person is in."""
    held = {normalize_dn(dn) for dn in group_dns}
    return frozenset(
        role for role, groups in mapping.items() if held & {normalize_dn(g) for g in groups}
    )


def role_mapping(rbac: object) -> dict[Role, list[str]]:
    """``[rbac]`` settings as role -> group DNs."""
    return {role: list(getattr(rbac, role.value)) for role in Role}


def allowed(roles: Iterable[Role], view: View) -> bool:
    return any(view in PERMISSIONS[Role(role)] for role in roles)


def worklist_detail(roles: Iterable[Role]) -> WorklistDetail | None:
    held = set(roles)
    if Role.RADIOLOGIST in held:
        return WorklistDetail.FULL
    if Role.EMERGENCY_PHYSICIAN in held:
        return WorklistDetail.TRIAGE
    if Role.TECHNOLOGIST in held:
        return WorklistDetail.STATUS
    return None


def parse_roles(values: Iterable[str]) -> frozenset[Role]:
    """Roles read back from a session; unknown names are dropped, never guessed."""
    known = {role.value for role in Role}
    return frozenset(Role(value) for value in values if value in known)
