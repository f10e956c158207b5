"""Dispatch priority of a closed study: order priority, then study-type rules (pure).

Workers claim queued studies by this priority, highest first, then by close time. The
priority is decided once, when the study closes, and kept with its dispatch row with the
rule that decided it:

1. **Order priority**: DICOM Requested Procedure Priority (0040,1003) of the received images
   (``STAT``, ``HIGH``, ``ROUTINE``, ``MEDIUM``, ``LOW``), at the top level or in the Request
   Attributes Sequence; HL7 priority codes (table 0027: ``S``, ``A``, ``R``...) are read the
   same way. When the images give none, an ADT patient class of Emergency (PV1-2 ``E``) counts
   as ASAP. Nothing known counts as routine.
2. **Study-type rules** (``[[worker.priority_rules]]``): the first rule that matches a series
   gives that series its rank (0-99); the study takes its highest-ranked series. A series no
   rule matches ranks 0. The defaults put head CT, CT angiography and stroke protocols first,
   then other CT, chest radiographs, other studies, and extremity radiographs last.

The stored integer is ``order level * 100 + rank``, so order priority always comes first.

Priority orders one queue; it cannot stop a chest radiograph from waiting minutes behind a
1,000-slice CT that a worker has already taken. So each dispatch row also carries the study's
image count (:func:`study_images`, frames included), and ``[worker] express_workers`` of the
warm workers take only studies of at most ``express_max_images`` images: the express lane.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from integrations.dicom.routing import Rule, SeriesInfo

MAX_RANK = 99


class OrderPriority(enum.IntEnum):
    """How urgently the order was placed; the value is the level in the stored priority."""

    LOW = 0
    ROUTINE = 1
    ASAP = 2
    STAT = 3


# DICOM CS values of (0040,1003) and HL7 table 0027 codes, folded to one scale.
_ORDER_CODES: dict[str, OrderPriority] = {
    "STAT": OrderPriority.STAT,
    "S": OrderPriority.STAT,
    "HIGH": OrderPriority.ASAP,
    "ASAP": OrderPriority.ASAP,
    "URGENT": OrderPriority.ASAP,
    "A": OrderPriority.ASAP,
    "T": OrderPriority.ASAP,  # timing critical
    "ROUTINE": OrderPriority.ROUTINE,
    "MEDIUM": OrderPriority.ROUTINE,
    "R": OrderPriority.ROUTINE,
    "P": OrderPriority.ROUTINE,  # preoperative
    "C": OrderPriority.ROUTINE,  # callback
    "LOW": OrderPriority.LOW,
}
EMERGENCY_PATIENT_CLASS = "E"  # HL7 table 0004


def order_priority_of(code: str) -> OrderPriority | None:
    """The order priority a DICOM or HL7 code means; None for an empty or unknown code."""
    return _ORDER_CODES.get(code.strip().upper())


@dataclass(frozen=True)
class PriorityRule:
    """Series that match ``match`` (modality, body part, protocol regex) get ``rank``."""

    match: Rule
    rank: int

    def __post_init__(self) -> None:
        if not 0 <= self.rank <= MAX_RANK:
            raise ValueError(f"rank of priority rule {self.match.name!r} must be 0..{MAX_RANK}")

    @property
    def name(self) -> str:
        return self.match.name


def _rule(name: str, rank: int, **conditions: object) -> PriorityRule:
    return PriorityRule(Rule(name=name, analyzers=(), **conditions), rank)  # type: ignore[arg-type]


HEAD_BODY_PARTS = ("HEAD", "BRAIN", "SKULL")
EXTREMITY_BODY_PARTS = (
    "HAND", "FINGER", "WRIST", "ARM", "FOREARM", "ELBOW", "HUMERUS", "SHOULDER", "CLAVICLE",
    "FOOT", "TOE", "ANKLE", "KNEE", "LEG", "FEMUR", "HIP", "EXTREMITY",
)  # fmt: skip
STROKE_PROTOCOL = r"(?i)\b(cta|angio\w*|stroke|perfusion|head|brain)\b"

DEFAULT_RULES: tuple[PriorityRule, ...] = (
    _rule("head-ct", 90, modality=("CT",), body_part=HEAD_BODY_PARTS),
    _rule("cta-stroke-ct", 90, modality=("CT",), protocol=STROKE_PROTOCOL),
    _rule("other-ct", 60, modality=("CT",)),
    _rule("chest-radiograph", 50, modality=("CR", "DX"), body_part=("CHEST",)),
    _rule("extremity-radiograph", 10, modality=("CR", "DX"), body_part=EXTREMITY_BODY_PARTS),
    _rule("other", 30),
)


@dataclass(frozen=True)
class StudyPriority:
    """The decided priority and, in words, what decided it."""

    order: OrderPriority
    order_source: str  # "dicom", "adt" or "none"
    rank: int
    rule: str  # the rule that ranked the study's highest series; "" when none matched

    @property
    def value(self) -> int:
        return int(self.order) * 100 + self.rank

    @property
    def decided_by(self) -> str:
        """What put the study where it is in the queue, for the dispatch row and the logs."""
        rule = f"rule {self.rule} (rank {self.rank})" if self.rule else "no rule (rank 0)"
        if self.order_source == "none":
            return f"order priority unknown (routine); {rule}"
        return f"order {self.order.name} from {self.order_source}; {rule}"


def decide_priority(
    series: Iterable[SeriesInfo],
    rules: Sequence[PriorityRule] = DEFAULT_RULES,
    *,
    requested_priorities: Iterable[str] = (),
    patient_class: str = "",
) -> StudyPriority:
    """Order priority first (images, then ADT patient class), then the best-ranked series."""
    levels = [p for p in map(order_priority_of, requested_priorities) if p is not None]
    if levels:
        order, source = max(levels), "dicom"
    elif patient_class.strip().upper() == EMERGENCY_PATIENT_CLASS:
        order, source = OrderPriority.ASAP, "adt"
    else:
        order, source = OrderPriority.ROUTINE, "none"
    rank, rule_name = 0, ""
    for item in series:
        matched = next((rule for rule in rules if rule.match.mismatch(item) is None), None)
        if matched is not None and (matched.rank > rank or not rule_name):
            rank, rule_name = matched.rank, matched.name
    return StudyPriority(order=order, order_source=source, rank=rank, rule=rule_name)


def study_images(series: Iterable[tuple[int, int | None]]) -> int:
    """How many images a study holds, from ``(instances, frames of its first instance)`` per
    series: a multi-frame object counts its frames, a single-frame one counts 1."""
    return sum(instances * max(1, frames or 1) for instances, frames in series)
