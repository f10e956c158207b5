"""Coded concepts used in pacsflow's result objects, in one place (pure).

Standard codes were checked against the PS3.16 tables that pydicom 3.0.2 ships
(``pydicom.sr._concepts_dict``) and the IHE AI Results (AIR) profile:

- Finding (DCM 121071), Presence of property (DCM 121052) with Present (DCM 121053) /
  Absent (DCM 121054), Probability (DCM 122157), Threshold Value (DCM 122411),
  Saliency (DCM 130404, CID 7180), Tracking Identifier / UID (DCM 112039 / 112040),
  Qualitative Evaluations container of TID 1500 (UMLS C0034375), Quantity (SCT 246205007).
- The purpose of reference "Processing Algorithm" that IHE AIR asks for in the Contributing
  Equipment Sequence has no DCM code yet: DCM 109103 is "Modifying Equipment" and 109102
  "Processing Equipment" (CID 7005). AIR (trial implementation) defines it as
  (Newcode1, 99IHE, "Processing Algorithm"); that is what we emit, beside highdicom's own
  "Processing Equipment" item.

Concepts the standard has no code for (urgency tier, "not analysable", interval change) use
the private coding scheme ``99PACSFLOW``, declared in every object's Coding Scheme
Identification Sequence so a receiver knows whose codes they are.
"""

from __future__ import annotations

from typing import Final

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

from models.results import CodedConcept as ResultConcept
from models.results import UrgencyTier

PRIVATE_SCHEME: Final = "99PACSFLOW"
PRIVATE_SCHEME_NAME: Final = "pacsflow local codes"
PRIVATE_SCHEME_RESPONSIBLE: Final = "pacsflow project"


def _private(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value=value, scheme_designator=PRIVATE_SCHEME, meaning=meaning)


# Contributing Equipment: the AI model, per IHE AIR.
PROCESSING_ALGORITHM: Final = CodedConcept(
    value="Newcode1", scheme_designator="99IHE", meaning="Processing Algorithm"
)

# TID 1500 / 1501 content.
FINDING: Final = CodedConcept.from_code(codes.DCM.Finding)
PRESENCE: Final = CodedConcept(
    value="121052", scheme_designator="DCM", meaning="Presence of property"
)
PRESENT: Final = CodedConcept(value="121053", scheme_designator="DCM", meaning="Present")
ABSENT: Final = CodedConcept(value="121054", scheme_designator="DCM", meaning="Absent")
PROBABILITY: Final = CodedConcept(value="122157", scheme_designator="DCM", meaning="Probability")
THRESHOLD: Final = CodedConcept(value="122411", scheme_designator="DCM", meaning="Threshold Value")
QUALITATIVE_EVALUATIONS: Final = CodedConcept(
    value="C0034375", scheme_designator="UMLS", meaning="Qualitative Evaluations"
)
QUANTITY: Final = CodedConcept(value="246205007", scheme_designator="SCT", meaning="Quantity")
NO_UNITS: Final = CodedConcept.from_code(codes.UCUM.NoUnits)
PERCENT: Final = CodedConcept(value="%", scheme_designator="UCUM", meaning="%")
IMAGING_PROCEDURE: Final = CodedConcept.from_code(codes.SCT.ImagingProcedure)
PROCEDURE_BY_MODALITY: Final = {
    "CT": CodedConcept.from_code(codes.LN.CTUnspecifiedBodyRegion),
    "MR": CodedConcept.from_code(codes.LN.MRIUnspecifiedBodyRegion),
    "CR": CodedConcept.from_code(codes.LN.XRUnspecifiedBodyRegion),
    "DX": CodedConcept.from_code(codes.LN.XRUnspecifiedBodyRegion),
}

# Segmentation and Parametric Map.
SALIENCY: Final = CodedConcept(value="130404", scheme_designator="DCM", meaning="Saliency")
MORPHOLOGICALLY_ABNORMAL_STRUCTURE: Final = CodedConcept.from_code(
    codes.SCT.MorphologicallyAbnormalStructure
)
ARTIFICIAL_INTELLIGENCE: Final = CodedConcept.from_code(codes.cid7162.ArtificialIntelligence)

# Private: study-level outcome and prior comparison.
URGENCY_TIER: Final = _private("URGTIER", "AI urgency tier")
TIER_VALUES: Final = {
    UrgencyTier.CRITICAL: _private("CRITICAL", "Critical"),
    UrgencyTier.URGENT: _private("URGENT", "Urgent"),
    UrgencyTier.ROUTINE: _private("ROUTINE", "Routine"),
}
NOT_ANALYSABLE: Final = _private("NOTANLYS", "Not analysable")
CARRIER_NOT_PRODUCED: Final = _private("NOCARRIER", "Result object not produced")
ANALYZER: Final = _private("ANALYZER", "pacsflow analyzer")
CLINICAL_USE_NOTICE: Final = _private("NOTCLIN", "Not for clinical use")
PRIOR_STUDY_UID: Final = _private("PRIORUID", "Prior study instance UID")
PRIOR_STUDY_DATE: Final = _private("PRIORDATE", "Prior study date")
PRIOR_ACCESSION: Final = _private("PRIORACC", "Prior study accession number")
PRIOR_STATUS: Final = _private("PRIORSTAT", "Prior comparison")
PRIOR_VALUE: Final = _private("ICPRIOR", "Value on prior study")
INTERVAL_CHANGE: Final = _private("ICABS", "Interval change")
INTERVAL_CHANGE_PERCENT: Final = _private("ICPCT", "Interval change, percent")


def to_coded(concept: ResultConcept) -> CodedConcept:
    """A highdicom CodedConcept from the analyzer contract's plain code."""
    return CodedConcept(
        value=concept.value, scheme_designator=concept.scheme, meaning=concept.meaning
    )


def from_coded(concept: CodedConcept) -> ResultConcept:
    """The analyzer contract's plain code from a highdicom (or pydicom) coded concept."""
    return ResultConcept(
        value=str(concept.value),
        scheme=str(concept.scheme_designator),
        meaning=str(concept.meaning),
    )


def same_code(left: CodedConcept | ResultConcept, right: CodedConcept | ResultConcept) -> bool:
    """Equal value and scheme (meanings may be worded differently)."""

    def key(concept: CodedConcept | ResultConcept) -> tuple[str, str]:
        if isinstance(concept, ResultConcept):
            return concept.value, concept.scheme
        return str(concept.value), str(concept.scheme_designator)

    return key(left) == key(right)
