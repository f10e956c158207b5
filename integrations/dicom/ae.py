"""Application Entity titles and the allowed-callers policy (pure).

An AE title is 1-16 characters of the DICOM default repertoire without backslash or control
characters; leading and trailing spaces are not significant (PS3.5 6.2, AE value
representation). The policy decides who may associate with the node: a caller is allowed by
AE title alone, or by AE title pinned to a host.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_AE_TITLE_LENGTH = 16


def normalize_ae_title(value: str) -> str:
    """Return the significant part of an AE title, or raise ValueError saying what is wrong."""
    if not isinstance(value, str):
        raise ValueError(f"AE title must be a string, got {type(value).__name__}")
    title = value.strip(" ")
    if not title:
        raise ValueError("AE title must not be empty or only spaces")
    if len(title) > MAX_AE_TITLE_LENGTH:
        raise ValueError(f"AE title {title!r} is longer than {MAX_AE_TITLE_LENGTH} characters")
    for char in title:
        if char == "\\" or ord(char) < 0x20 or ord(char) > 0x7E:
            raise ValueError(f"AE title {title!r} contains a forbidden character {char!r}")
    return title


@dataclass(frozen=True)
class AllowedCaller:
    """One entry of the allowed-callers list; ``host`` pins the caller to one address."""

    ae_title: str
    host: str | None = None


@dataclass(frozen=True)
class CallerDecision:
    accepted: bool
    reason: str


def check_association(
    calling_ae_title: str,
    called_ae_title: str,
    peer_host: str,
    *,
    node_ae_title: str,
    allowed_callers: tuple[AllowedCaller, ...],
) -> CallerDecision:
    """Decide whether an association request may proceed, with the reason in words.

    An empty ``allowed_callers`` refuses everyone: a hospital node must list its callers.
    """
    calling = calling_ae_title.strip(" ")
    called = called_ae_title.strip(" ")
    if called != node_ae_title:
        return CallerDecision(
            False, f"called AE title {called!r} is not this node's ({node_ae_title!r})"
        )
    entries = [entry for entry in allowed_callers if entry.ae_title == calling]
    if not entries:
        return CallerDecision(False, f"calling AE title {calling!r} is not in allowed_callers")
    for entry in entries:
        if entry.host is None or entry.host == peer_host:
            return CallerDecision(True, f"calling AE title {calling!r} allowed")
    hosts = ", ".join(sorted(entry.host or "" for entry in entries))
    return CallerDecision(
        False, f"calling AE title {calling!r} is pinned to {hosts}, request came from {peer_host}"
    )
