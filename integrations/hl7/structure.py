"""What the HL7 v2 standard allows in a message, read from hl7apy's reference tables (pure).

hl7apy ships the v2.x message structures and segment definitions as data. pacsflow uses them
to check received messages against the standard of their declared version: which segment IDs
exist (``XX1`` does not; ``Z`` segments are local and always allowed), which message structure
a trigger event uses (A04, A08 and A13 use ADT_A01; A11 uses ADT_A09; A40 uses ADT_A39) and
which of its segments are required. Lookups are cached: each (version, structure) is read once.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from hl7apy import load_library

# Trigger events whose structure is not named after themselves (HL7 table 0354).
_SHARED_STRUCTURES = {
    "A04": "ADT_A01",
    "A05": "ADT_A01",
    "A08": "ADT_A01",
    "A13": "ADT_A01",
    "A14": "ADT_A01",
    "A28": "ADT_A01",
    "A31": "ADT_A01",
    "A10": "ADT_A09",
    "A11": "ADT_A09",
    "A12": "ADT_A09",
    "A40": "ADT_A39",
    "A41": "ADT_A39",
    "A42": "ADT_A39",
}


@lru_cache(maxsize=16)
def _library(version: str) -> Any:
    return load_library(version)


@lru_cache(maxsize=16)
def segment_ids(version: str) -> frozenset[str]:
    """Every segment ID the standard defines in ``version``."""
    return frozenset(_library(version).segments.SEGMENTS)


def is_known_segment(segment_id: str, version: str) -> bool:
    """True for a segment the version defines, or a local Z segment."""
    return segment_id.startswith("Z") or segment_id in segment_ids(version)


@lru_cache(maxsize=256)
def message_structure(message_code: str, trigger_event: str, declared: str, version: str) -> str:
    """The structure (e.g. ``ADT_A39``) of a message; '' when the version has none for it."""
    messages = _library(version).messages.MESSAGES
    for candidate in (
        declared,
        f"{message_code}_{trigger_event}",
        _SHARED_STRUCTURES.get(trigger_event, "") if message_code == "ADT" else "",
    ):
        if candidate and candidate in messages:
            return candidate
    return ""


@lru_cache(maxsize=256)
def required_segments(structure: str, version: str) -> tuple[str, ...]:
    """Segments a message of ``structure`` must contain (required groups flattened)."""
    reference = _library(version).messages.MESSAGES[structure]
    found: list[str] = []

    def walk(node: Any) -> None:
        for name, child, (minimum, _maximum), kind in node[1]:
            if minimum < 1:
                continue
            if kind == "GRP":
                walk(child)
            elif name not in found:
                found.append(name)

    walk(reference)
    return tuple(found)
