"""The small records tasks pass to each other: references, never datasets or pixels (pure).

They carry UIDs, paths, the opaque study key and a few labels, so they are cheap to hash and
safe in Prefect's run history: no patient name, patient ID, birth date, accession number or
pixel data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class StudyContext:
    study_instance_uid: str
    generation: int
    study_key: str
    modalities: tuple[str, ...]
    closed_at: datetime | None
    analyzers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # analyzer -> series UIDs
    unrouted_reason: str | None = None


@dataclass(frozen=True)
class CriticalFinding:
    label: str
    probability: float
    code: str = ""  # "SCHEME:VALUE"
    rule: str = ""  # the urgency rule that made it Critical


@dataclass(frozen=True)
class AnalysisRef:
    analyzer: str
    result_path: str
    status: str
    tier: str
    model_version: str
    primary_finding: str
    critical_findings: tuple[CriticalFinding, ...]
    inference_seconds: float
    urgency_rule: str = ""  # the rule that fired for the study tier (integrations.urgency)
    primary_probability: float | None = None
    clinical_use: bool = True  # False: the model is not for clinical use (AnalysisResult's)


@dataclass(frozen=True)
class PriorRef:
    """The prior chosen for comparison, or why there is none."""

    available: bool
    reason: str = ""
    study_instance_uid: str = ""
    study_date: str = ""
    accession_number: str = ""


@dataclass(frozen=True)
class ResultObjectRef:
    sop_instance_uid: str
    kind: str
    path: str
