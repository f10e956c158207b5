"""DIMSE status codes pacsflow returns or interprets, each with its PS3.4/PS3.7 meaning (pure)."""

from __future__ import annotations

SUCCESS = 0x0000

# C-STORE (PS3.4 Table B.2-1)
STORE_OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources
STORE_DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900  # Error: Data Set does not match SOP Class
STORE_CANNOT_UNDERSTAND = 0xC000  # Error: Cannot understand
# Error: Cannot understand (Cxxx), pacsflow's sub-code for a known SOP Instance UID that
# arrived with other content under [node] on_changed_duplicate = "refuse". PS3.4 lists no
# "duplicate" failure for C-STORE (0x0111 Duplicate SOP Instance is an N-CREATE status), and
# the A7xx "out of resources" class would tell the sender to retry the same bytes forever.
# C100 is outside the C0xx and C2xx codes pynetdicom itself answers with; the Error Comment
# and the Offending Element (0008,0018) say why.
STORE_REFUSED_CHANGED_DUPLICATE = 0xC100
STORE_COERCION_OF_DATA_ELEMENTS = 0xB000  # Warning: Coercion of Data Elements
STORE_ELEMENTS_DISCARDED = 0xB006  # Warning: Elements Discarded

# General (PS3.7 Annex C)
PROCESSING_FAILURE = 0x0110  # Failure: Processing failure
DUPLICATE_SOP_INSTANCE = 0x0111  # Failure: Duplicate SOP Instance (N-CREATE; not for C-STORE)
INVALID_ARGUMENT_VALUE = 0x0115  # Failure: Invalid argument value

# C-FIND / C-MOVE pending (PS3.4 C.4)
PENDING = 0xFF00  # Pending: matches are continuing
PENDING_WARNING = 0xFF01  # Pending: optional keys not supported
MOVE_SUB_OPERATIONS_COMPLETE_WITH_FAILURES = (
    0xB000  # Warning: sub-operations complete, one or more failures
)

CANCEL = 0xFE00  # Cancel: sub-operations terminated due to Cancel


def is_success(status: int) -> bool:
    return status == SUCCESS


def is_pending(status: int) -> bool:
    return status in (PENDING, PENDING_WARNING)


def is_warning(status: int) -> bool:
    return status == 0x0001 or (status & 0xF000) == 0xB000


def is_out_of_resources(status: int) -> bool:
    """0xA7xx: the peer is short of resources; worth retrying later."""
    return (status & 0xFF00) == 0xA700


# PS3.8 9.3.4 A-ASSOCIATE-RJ: (source, reason/diagnostic) in plain words.
_REJECTION_WORDS: dict[tuple[int | None, int | None], str] = {
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


def rejection_words(source: int | None, diagnostic: int | None) -> str:
    """An A-ASSOCIATE-RJ's source and reason in plain words."""
    return _REJECTION_WORDS.get((source, diagnostic), f"diagnostic {diagnostic}")
