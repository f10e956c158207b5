"""Urgency scoring: site rules per label and threshold decide each finding's tier (pure).

A rule is data: which findings it matches (label names, codes ``SCHEME:VALUE``, or a regular
expression searched in the label, optionally limited to some analyzers), the probability from
which it fires, and the tier it gives. Each finding of an analysis is scored like this:

1. Site rules (``[[urgency.rules]]``), in file order: the first rule that matches the finding
   and whose threshold the probability reaches fires. ``min_probability`` unset means "the
   model's own operating threshold". A site rule may set a threshold below the model's: the
   finding then counts as present at the site's operating point (reported so in the SR and HL7
   messages), and the model's own threshold is kept in the urgency record. A site rule may
   also lower a tier (e.g. ``Nodule`` → Routine): the site decides explicitly.
2. Otherwise, a finding present at the model's threshold takes the more urgent of the model
   manifest's tier for that label and the first built-in default rule that matches
   (:data:`DEFAULT_RULES`, from the one table in :mod:`integrations.default_rules`: tension pneumothorax, aortic dissection, intracranial hemorrhage of
   any subtype and acute stroke are Critical; pneumothorax, fracture and mass Urgent). A
   manifest can therefore never make an intracranial hemorrhage Routine silently.
3. A finding that is not present is Routine and no rule fires.

The study's tier is its most urgent finding's; the rule recorded with it is the one that fired
for the primary finding (most urgent, then most probable).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from integrations.default_rules import DEFAULT_FINDING_RULES
from models.results import AnalysisResult, Finding, UrgencyTier

SITE = "site"
DEFAULT = "default"
MANIFEST = "manifest"


@dataclass(frozen=True)
class FindingMatcher:
    """Which findings a rule is about. Every condition given must hold; at least one of
    ``labels``, ``codes`` or ``label_pattern`` must be given."""

    labels: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()  # "SCHEME:VALUE", e.g. "SCT:36118008"
    label_pattern: str | None = None  # searched, case-insensitively, in the label
    analyzers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (self.labels or self.codes or self.label_pattern):
            raise ValueError("a finding matcher needs labels, codes or label_pattern")
        if self.label_pattern is not None:
            re.compile(self.label_pattern)  # raises re.error for a bad expression
        for code in self.codes:
            if ":" not in code:
                raise ValueError(f"code {code!r} must be written SCHEME:VALUE")

    def matches(self, label: str, code: str = "", analyzer: str = "") -> bool:
        if self.analyzers and analyzer not in self.analyzers:
            return False
        label_folded = label.casefold()
        by_label = bool(self.labels) and label_folded in {name.casefold() for name in self.labels}
        by_code = bool(self.codes) and code.casefold() in {c.casefold() for c in self.codes}
        by_pattern = self.label_pattern is not None and bool(
            re.search(self.label_pattern, label, flags=re.IGNORECASE)
        )
        return by_label or by_code or by_pattern


@dataclass(frozen=True)
class UrgencyRule:
    """A finding that matches ``matcher`` with probability >= the threshold gets ``tier``."""

    name: str
    tier: UrgencyTier
    matcher: FindingMatcher
    min_probability: float | None = None
    source: str = SITE

    def __post_init__(self) -> None:
        if self.min_probability is not None and not 0.0 <= self.min_probability <= 1.0:
            raise ValueError(f"rule {self.name}: min_probability must be within [0, 1]")

    @property
    def qualified_name(self) -> str:
        return f"{self.source}:{self.name}"


DEFAULT_RULES: tuple[UrgencyRule, ...] = tuple(
    UrgencyRule(row.name, UrgencyTier(row.tier), FindingMatcher(**row.matcher), source=DEFAULT)
    for row in DEFAULT_FINDING_RULES
)


@dataclass(frozen=True)
class UrgencyRules:
    """The site's rules and whether the built-in defaults apply after them."""

    site: tuple[UrgencyRule, ...] = ()
    use_defaults: bool = True

    @property
    def defaults(self) -> tuple[UrgencyRule, ...]:
        return DEFAULT_RULES if self.use_defaults else ()


@dataclass(frozen=True)
class FindingUrgency:
    """The outcome for one finding: tier, the rule that fired (empty when none), and why."""

    label: str
    tier: UrgencyTier
    rule: str
    present: bool
    probability: float
    model_threshold: float
    threshold: float  # the operating threshold the finding was judged at

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "tier": self.tier.value,
            "rule": self.rule,
            "present": self.present,
            "probability": round(self.probability, 4),
            "model_threshold": self.model_threshold,
            "threshold": self.threshold,
        }


@dataclass(frozen=True)
class UrgencyAssessment:
    """The study-level tier of one analysis and the rule that fired for it."""

    tier: UrgencyTier
    rule: str
    primary_finding: str
    findings: tuple[FindingUrgency, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier.value,
            "rule": self.rule,
            "primary_finding": self.primary_finding,
            "findings": [finding.to_json() for finding in self.findings],
        }


def code_key(finding: Finding) -> str:
    return f"{finding.code.scheme}:{finding.code.value}"


def score_finding(finding: Finding, analyzer: str, rules: UrgencyRules) -> FindingUrgency:
    """Tier and fired rule for one finding (see the module docstring for the order)."""
    code = code_key(finding)
    for rule in rules.site:
        if not rule.matcher.matches(finding.label, code, analyzer):
            continue
        threshold = finding.threshold if rule.min_probability is None else rule.min_probability
        if finding.probability >= threshold:
            return FindingUrgency(
                label=finding.label,
                tier=rule.tier,
                rule=rule.qualified_name,
                present=True,
                probability=finding.probability,
                model_threshold=finding.threshold,
                threshold=threshold,
            )
    if not finding.present:
        return FindingUrgency(
            label=finding.label,
            tier=UrgencyTier.ROUTINE,
            rule="",
            present=False,
            probability=finding.probability,
            model_threshold=finding.threshold,
            threshold=finding.threshold,
        )
    tier, rule_name = finding.tier, f"{MANIFEST}:{analyzer}"
    for rule in rules.defaults:
        if rule.matcher.matches(finding.label, code, analyzer):
            if rule.tier.rank < tier.rank:
                tier, rule_name = rule.tier, rule.qualified_name
            break
    return FindingUrgency(
        label=finding.label,
        tier=tier,
        rule=rule_name,
        present=True,
        probability=finding.probability,
        model_threshold=finding.threshold,
        threshold=finding.threshold,
    )


def assess(result: AnalysisResult, rules: UrgencyRules) -> UrgencyAssessment:
    scored = tuple(score_finding(finding, result.analyzer, rules) for finding in result.findings)
    present = sorted(
        (item for item in scored if item.present), key=lambda f: (f.tier.rank, -f.probability)
    )
    if not present:
        return UrgencyAssessment(UrgencyTier.ROUTINE, "", "", scored)
    primary = present[0]
    return UrgencyAssessment(primary.tier, primary.rule, primary.label, scored)


def apply_urgency(result: AnalysisResult, rules: UrgencyRules) -> AnalysisResult:
    """The result with every finding's tier (and presence) set by the rules.

    The assessment is kept in ``extra["urgency"]``, so the rule that fired travels with the
    result to disk, the SR, the HL7 messages and the worklist.
    """
    assessment = assess(result, rules)
    findings = []
    for finding, scored in zip(result.findings, assessment.findings, strict=True):
        findings.append(
            replace(
                finding,
                tier=scored.tier if scored.present else finding.tier,
                present=scored.present,
                threshold=scored.threshold,
            )
        )
    return replace(
        result,
        findings=tuple(findings),
        extra={**result.extra, "urgency": assessment.to_json()},
    )


def fired_rule(result: AnalysisResult) -> str:
    """The rule recorded by :func:`apply_urgency` for the study tier ('' when none)."""
    return str(result.extra.get("urgency", {}).get("rule", ""))


def finding_rules(result: AnalysisResult) -> dict[str, str]:
    """Label → rule that fired, as recorded by :func:`apply_urgency`."""
    return {
        item["label"]: item.get("rule", "")
        for item in result.extra.get("urgency", {}).get("findings", [])
    }


def rules_from_data(items: Iterable[dict[str, Any]], use_defaults: bool = True) -> UrgencyRules:
    """Build rules from plain data (the settings section's ``rules`` as dicts)."""
    rules = []
    for item in items:
        rules.append(
            UrgencyRule(
                name=item["name"],
                tier=UrgencyTier(item["tier"]),
                matcher=FindingMatcher(
                    labels=tuple(item.get("labels", ())),
                    codes=tuple(item.get("codes", ())),
                    label_pattern=item.get("label_pattern"),
                    analyzers=tuple(item.get("analyzers", ())),
                ),
                min_probability=item.get("min_probability"),
            )
        )
    return UrgencyRules(tuple(rules), use_defaults)


def study_tier(tiers: Sequence[UrgencyTier]) -> UrgencyTier:
    return UrgencyTier.most_urgent(list(tiers))
