"""Routing: which analyzers see which series of a study (pure).

Rules are data (modality, body part, protocol regex, SOP class → analyzers), never evaluated
code. A series matches a rule when every condition the rule gives holds; the study's route is
the union over its series. A study no rule matches is ``unrouted`` with the reason. A rule's
body part is compared with the body part resolved from the series' evidence
(:mod:`integrations.dicom.body_part`), and the route records which evidence decided.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from integrations.dicom.body_part import (
    AnatomicRegion,
    BodyPartEvidence,
    BodyPartOverride,
    resolve_body_part,
)


@dataclass(frozen=True)
class SeriesInfo:
    series_instance_uid: str
    modality: str = ""
    body_part_examined: str = ""
    series_description: str = ""
    protocol_name: str = ""
    sop_class_uids: tuple[str, ...] = ()
    station_name: str = ""
    anatomic_regions: tuple[AnatomicRegion, ...] = ()
    study_description: str = ""
    calling_ae_title: str = ""

    def body_part(self, overrides: Sequence[BodyPartOverride] = ()) -> BodyPartEvidence:
        return resolve_body_part(
            body_part_examined=self.body_part_examined,
            anatomic_regions=self.anatomic_regions,
            series_description=self.series_description,
            protocol_name=self.protocol_name,
            study_description=self.study_description,
            station_name=self.station_name,
            calling_ae_title=self.calling_ae_title,
            overrides=overrides,
        )


@dataclass(frozen=True)
class Rule:
    name: str
    analyzers: tuple[str, ...]
    modality: tuple[str, ...] = ()
    body_part: tuple[str, ...] = ()
    protocol: str | None = None
    sop_class: tuple[str, ...] = ()

    def mismatch(self, series: SeriesInfo, body_part: BodyPartEvidence | None = None) -> str | None:
        """None when ``series`` matches, else the first condition that failed, in words.

        ``body_part``: the series' resolved body part (resolved without overrides if not given).
        """
        if self.modality and series.modality.upper() not in {m.upper() for m in self.modality}:
            return f"modality {series.modality or '(none)'} not in {list(self.modality)}"
        if self.body_part:
            evidence = body_part if body_part is not None else series.body_part()
            if evidence.body_part.upper() not in {b.upper() for b in self.body_part}:
                return f"{evidence.describe()}; not in {list(self.body_part)}"
        if self.protocol is not None:
            pattern = re.compile(self.protocol)
            if not (
                pattern.search(series.protocol_name) or pattern.search(series.series_description)
            ):
                return f"protocol/series description does not match /{self.protocol}/"
        if self.sop_class and not set(series.sop_class_uids) & set(self.sop_class):
            return "SOP class not in the rule's list"
        return None


@dataclass(frozen=True)
class Route:
    """Analyzer name → the series it analyses, plus the rules that fired."""

    analyzers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rules: tuple[str, ...] = ()
    unrouted_reason: str | None = None
    # Series Instance UID → the evidence that decided its body part, in words.
    body_parts: dict[str, str] = field(default_factory=dict)

    @property
    def is_routed(self) -> bool:
        return bool(self.analyzers)

    def to_json(self) -> dict[str, object]:
        return {
            "analyzers": {name: list(series) for name, series in self.analyzers.items()},
            "rules": list(self.rules),
            "unrouted_reason": self.unrouted_reason,
            "body_parts": dict(self.body_parts),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Route:
        analyzers = data.get("analyzers") or {}
        assert isinstance(analyzers, dict)
        rules = data.get("rules") or []
        assert isinstance(rules, list)
        reason = data.get("unrouted_reason")
        body_parts = data.get("body_parts") or {}
        assert isinstance(body_parts, dict)
        return cls(
            analyzers={str(k): tuple(v) for k, v in analyzers.items()},
            rules=tuple(str(r) for r in rules),
            unrouted_reason=None if reason is None else str(reason),
            body_parts={str(k): str(v) for k, v in body_parts.items()},
        )


def route_study(
    series: Iterable[SeriesInfo],
    rules: Sequence[Rule],
    body_part_overrides: Sequence[BodyPartOverride] = (),
) -> Route:
    """Apply every rule to every series; keep analyzer order as the rules give it."""
    series = list(series)
    if not series:
        return Route(unrouted_reason="study has no series")
    evidence = {item.series_instance_uid: item.body_part(body_part_overrides) for item in series}
    body_parts = {uid: found.describe() for uid, found in evidence.items()}
    if not rules:
        return Route(unrouted_reason="no routing rules are configured", body_parts=body_parts)
    analyzers: dict[str, list[str]] = {}
    fired: list[str] = []
    reasons: list[str] = []
    for rule in rules:
        for item in series:
            why_not = rule.mismatch(item, evidence[item.series_instance_uid])
            if why_not is not None:
                reasons.append(
                    f"rule {rule.name!r} vs series {item.series_instance_uid}: {why_not}"
                )
                continue
            if rule.name not in fired:
                fired.append(rule.name)
            for analyzer in rule.analyzers:
                targets = analyzers.setdefault(analyzer, [])
                if item.series_instance_uid not in targets:
                    targets.append(item.series_instance_uid)
    if not analyzers:
        return Route(
            unrouted_reason="no rule matched: " + "; ".join(reasons[:10]), body_parts=body_parts
        )
    return Route(
        analyzers={k: tuple(v) for k, v in analyzers.items()},
        rules=tuple(fired),
        body_parts=body_parts,
    )
