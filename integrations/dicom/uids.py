"""DICOM UIDs: validation before any UID touches a path, and deterministic result UIDs (pure).

A UID is 1-64 characters of digits and dots, components without leading zeros (PS3.5 9.1).
Result objects get UIDs derived from what they are (study, analyzer, model version, kind,
generation) so that a rerun produces the same UIDs and the PACS replaces instead of duplicating.
"""

from __future__ import annotations

import hashlib
import re

from integrations.errors import InvalidUIDError

_UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
MAX_UID_LENGTH = 64

# UUID-derived root (PS3.5 B.2): "2.25." followed by a 128-bit integer in decimal.
UUID_DERIVED_ROOT = "2.25."


def is_valid_uid(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_UID_LENGTH
        and _UID_PATTERN.fullmatch(value) is not None
    )


def validate_uid(value: object, what: str = "UID") -> str:
    """Return ``value`` when it is a conformant UID, else raise :class:`InvalidUIDError`."""
    if isinstance(value, str):
        # Only DICOM padding (NUL, and the space senders add): a UID carrying any other
        # whitespace is not the UID without it.
        value = value.rstrip("\x00").strip(" ")
    if not is_valid_uid(value):
        raise InvalidUIDError(value, what)
    assert isinstance(value, str)
    return value


def derived_uid(*parts: str | int) -> str:
    """A UID that depends only on ``parts``: the same inputs always give the same UID.

    Uses the 2.25 UUID-derived root with 128 bits of SHA-256 over the parts, so it needs no
    registered organisation root and collides with nothing in practice.
    """
    text = "\x1f".join(str(part) for part in parts)
    # surrogatepass: the same bytes for any text UTF-8 can encode; a lone surrogate (from a
    # caller's str, never from decoded DICOM or HL7) gets a UID instead of an exception
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]
    return UUID_DERIVED_ROOT + str(int.from_bytes(digest, "big"))
