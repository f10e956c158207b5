"""The built-in finding rules: one table for urgency tiers and escalation teams (pure).

Each row says which findings it matches, the tier they get (:mod:`integrations.urgency`) and,
for Critical findings, the team they are escalated to (:mod:`integrations.escalation.rules`).
Both read this table, so a finding the defaults call Critical is always routed by the same
rule that made it Critical. Site rules (``[[urgency.rules]]``, ``[[escalation.rules]]``) come
before it; ``use_default_rules = false`` switches it off in either section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HEMORRHAGE_PATTERN = (
    r"(intracranial|epidural|extradural|subdural|subarachnoid|intraparenchymal|intracerebral"
    r"|intraventricular|cerebral|mixed intracranial).*(hemorrhage|haemorrhage|bleed)"
)


@dataclass(frozen=True)
class DefaultFindingRule:
    """Findings matching ``matcher`` (FindingMatcher keyword arguments) get ``tier``; a
    Critical one is escalated to ``team`` when the site has defined that team."""

    name: str
    tier: str  # "Critical" | "Urgent" | "Routine"
    matcher: dict[str, Any] = field(default_factory=dict)
    team: str | None = None


DEFAULT_FINDING_RULES: tuple[DefaultFindingRule, ...] = (
    DefaultFindingRule(
        "tension-pneumothorax",
        "Critical",
        {
            "label_pattern": r"\btension pneumothorax\b",
            "codes": ("99PACSFLOW:TENSION-PNEUMOTHORAX",),
        },
        team="surgery",
    ),
    DefaultFindingRule(
        "aortic-dissection",
        "Critical",
        {"label_pattern": r"\baortic dissection\b", "codes": ("SCT:308546005",)},
        team="surgery",
    ),
    DefaultFindingRule(
        "intracranial-hemorrhage",
        "Critical",
        {
            "label_pattern": HEMORRHAGE_PATTERN,
            # intracranial, subarachnoid and cerebral hemorrhage (SNOMED CT)
            "codes": ("SCT:1386000", "SCT:21454007", "SCT:274100004"),
        },
        team="neurosurgery",
    ),
    DefaultFindingRule(
        "acute-stroke",
        "Critical",
        {
            "label_pattern": (
                r"\bacute\b.*\b(stroke|infarct(ion)?)\b|^stroke$|large vessel occlusion"
                r"|hyperdense middle cerebral artery"
            ),
            # the stroke analyzers' private codes (models/codes.py)
            "codes": ("99PACSFLOW:ACUTE-ISCHEMIC-STROKE", "99PACSFLOW:HYPERDENSE-MCA-SIGN"),
        },
        team="stroke",
    ),
    DefaultFindingRule(
        "pneumothorax",
        "Urgent",
        {"label_pattern": r"^pneumothorax$", "codes": ("SCT:36118008",)},
    ),
    DefaultFindingRule("fracture", "Urgent", {"label_pattern": r"\bfracture\b"}),
    DefaultFindingRule("mass", "Urgent", {"label_pattern": r"\bmass\b"}),
)
