"""What an analyzer returns: findings, urgency, heatmaps, as plain values (pure).

These types are the contract between ``models/`` (which produces them) and everything
downstream (SR/GSPS builders, worklist, EMR messages, escalation). They import neither torch
nor any I/O library. Heatmaps are numpy arrays at the resolution of the image they belong to;
the result store writes them beside the JSON so that tasks pass only references.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

import numpy as np


class UrgencyTier(StrEnum):
    CRITICAL = "Critical"
    URGENT = "Urgent"
    ROUTINE = "Routine"

    @property
    def rank(self) -> int:
        """0 for Critical, 1 for Urgent, 2 for Routine: sorts the most urgent first."""
        return _TIER_RANK[self]

    @classmethod
    def most_urgent(cls, tiers: list[UrgencyTier] | tuple[UrgencyTier, ...]) -> UrgencyTier:
        return min(tiers, key=lambda tier: tier.rank, default=cls.ROUTINE)


_TIER_RANK = {UrgencyTier.CRITICAL: 0, UrgencyTier.URGENT: 1, UrgencyTier.ROUTINE: 2}


@dataclass(frozen=True)
class CodedConcept:
    """A code from a coding scheme: ``CodedConcept("36118008", "SCT", "Pneumothorax")``."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class ImageReference:
    """One image (and frame, for multi-frame objects) a finding or heatmap refers to."""

    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    frame_number: int | None = None


@dataclass(frozen=True)
class Measurement:
    """A numeric measurement with a UCUM unit, e.g. hemorrhage volume in mL."""

    name: CodedConcept
    value: float
    unit: CodedConcept


@dataclass(frozen=True)
class Finding:
    """One label as evaluated on the study: present or absent, with its probability."""

    label: str
    code: CodedConcept
    probability: float
    threshold: float
    present: bool
    tier: UrgencyTier  # the tier this label carries when present
    images: tuple[ImageReference, ...] = ()
    measurements: tuple[Measurement, ...] = ()

    @property
    def effective_tier(self) -> UrgencyTier:
        return self.tier if self.present else UrgencyTier.ROUTINE


@dataclass(frozen=True)
class Heatmap:
    """A Grad-CAM map in [0, 1] for one positive finding on one image (rows x columns)."""

    label: str
    image: ImageReference
    values: np.ndarray = field(compare=False)


AnalysisStatus = Literal["analysed", "not_analysable"]

# Said by every output of a result whose model is not for clinical use (demo or research
# weights, loaded only where ``[models] allow_non_clinical = true``).
NOT_FOR_CLINICAL_USE = "NOT FOR CLINICAL USE"


@dataclass(frozen=True)
class ModelIdentity:
    """Who produced a result: the algorithm identification carried into SR and messages."""

    name: str
    version: str
    manufacturer: str
    weights_sha256: str
    clinical_use: bool
    intended_use: str = ""

    @property
    def algorithm_uid_seed(self) -> str:
        """Changes whenever the weights change (a retrained model is a new device)."""
        return f"{self.name}|{self.version}|{self.weights_sha256}"


@dataclass(frozen=True)
class AnalysisResult:
    """Everything one analyzer concluded about one study."""

    analyzer: str
    model: ModelIdentity
    status: AnalysisStatus
    findings: tuple[Finding, ...] = ()
    heatmaps: tuple[Heatmap, ...] = ()
    reason: str | None = None  # why the study was not analysable
    analysed_images: tuple[ImageReference, ...] = ()
    inference_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # analyzer-specific details, JSON-safe

    @property
    def tier(self) -> UrgencyTier:
        return UrgencyTier.most_urgent([finding.effective_tier for finding in self.findings])

    @property
    def clinical_use(self) -> bool:
        """The one value every output reads: False marks the result NOT FOR CLINICAL USE."""
        return self.model.clinical_use

    @property
    def clinical_use_notice(self) -> str:
        """The sentence outputs carry when the model is not for clinical use, else ''."""
        if self.clinical_use:
            return ""
        return (
            f"{NOT_FOR_CLINICAL_USE}: {self.model.name} {self.model.version} is a demo or"
            " research model, not approved for patient care."
        )

    @property
    def positive_findings(self) -> tuple[Finding, ...]:
        """Present findings, most urgent and most probable first."""
        present = [finding for finding in self.findings if finding.present]
        return tuple(sorted(present, key=lambda f: (f.tier.rank, -f.probability)))

    @property
    def primary_finding(self) -> Finding | None:
        positives = self.positive_findings
        return positives[0] if positives else None

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form without the heatmap arrays (they are stored separately)."""
        data = asdict(self)
        data["heatmaps"] = [
            {"label": heatmap.label, "image": asdict(heatmap.image)} for heatmap in self.heatmaps
        ]
        data["tier"] = self.tier.value
        data["clinical_use"] = self.clinical_use
        return data

    @classmethod
    def from_json(
        cls, data: dict[str, Any], heatmap_arrays: list[np.ndarray] | None = None
    ) -> AnalysisResult:
        def concept(item: dict[str, Any]) -> CodedConcept:
            return CodedConcept(**item)

        def image(item: dict[str, Any]) -> ImageReference:
            return ImageReference(**item)

        findings = tuple(
            Finding(
                label=item["label"],
                code=concept(item["code"]),
                probability=float(item["probability"]),
                threshold=float(item["threshold"]),
                present=bool(item["present"]),
                tier=UrgencyTier(item["tier"]),
                images=tuple(image(ref) for ref in item.get("images", ())),
                measurements=tuple(
                    Measurement(concept(m["name"]), float(m["value"]), concept(m["unit"]))
                    for m in item.get("measurements", ())
                ),
            )
            for item in data.get("findings", ())
        )
        arrays = heatmap_arrays or []
        heatmaps = tuple(
            Heatmap(label=item["label"], image=image(item["image"]), values=arrays[index])
            for index, item in enumerate(data.get("heatmaps", ()))
            if index < len(arrays)
        )
        return cls(
            analyzer=data["analyzer"],
            model=ModelIdentity(**data["model"]),
            status=data["status"],
            findings=findings,
            heatmaps=heatmaps,
            reason=data.get("reason"),
            analysed_images=tuple(image(ref) for ref in data.get("analysed_images", ())),
            inference_seconds=float(data.get("inference_seconds", 0.0)),
            extra=dict(data.get("extra", {})),
        )
