"""A result document: everything an ORU or a FHIR DiagnosticReport is built from (pure).

It is written to the outbox when the study is analysed and turned into the message only when
it is sent, so that an ADT message arriving in between (admission, transfer, merge) still
reaches the EMR with the result. Order details come from the DICOM header (the modality
worklist copies them into the images: Request Attributes Sequence, Imaging Service Request).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pydicom import Dataset

from integrations.dicom.uids import derived_uid
from models.results import AnalysisResult, CodedConcept

DOCUMENT_KIND = "pacsflow.ai-result"
DOCUMENT_VERSION = 1


@dataclass(frozen=True)
class StudyFacts:
    """The study as DICOM describes it (``studies`` row)."""

    study_instance_uid: str
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    patient_name: str = ""  # DICOM PN
    patient_birth_date: str = ""  # DICOM DA
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    modalities: tuple[str, ...] = ()


@dataclass(frozen=True)
class OrderInfo:
    """The imaging order the study fulfils."""

    accession_number: str = ""
    issuer_of_accession_number: str = ""
    placer_order_number: str = ""
    filler_order_number: str = ""
    requested_procedure_id: str = ""
    requested_procedure_description: str = ""
    procedure_code: CodedConcept | None = None
    requesting_physician: str = ""  # DICOM PN
    referring_physician: str = ""  # DICOM PN

    @classmethod
    def from_dataset(cls, dataset: Dataset, accession_number: str = "") -> OrderInfo:
        """Read the order from an image header (first Request Attributes item, then top level)."""
        request = Dataset()
        if "RequestAttributesSequence" in dataset and len(dataset.RequestAttributesSequence):
            request = dataset.RequestAttributesSequence[0]

        def text(keyword: str) -> str:
            for source in (request, dataset):
                value = source.get(keyword)
                if value not in (None, ""):
                    return str(value).strip()
            return ""

        issuer = ""
        for source in (request, dataset):
            sequence = source.get("IssuerOfAccessionNumberSequence")
            if sequence:
                issuer = str(sequence[0].get("LocalNamespaceEntityID", "") or "")
                break
        code = None
        for keyword in ("RequestedProcedureCodeSequence", "ProcedureCodeSequence"):
            for source in (request, dataset):
                sequence = source.get(keyword)
                if sequence:
                    item = sequence[0]
                    code = CodedConcept(
                        str(item.get("CodeValue", "")),
                        str(item.get("CodingSchemeDesignator", "")),
                        str(item.get("CodeMeaning", "")),
                    )
                    break
            if code:
                break
        return cls(
            accession_number=accession_number or text("AccessionNumber"),
            issuer_of_accession_number=issuer,
            placer_order_number=text("PlacerOrderNumberImagingServiceRequest"),
            filler_order_number=text("FillerOrderNumberImagingServiceRequest"),
            requested_procedure_id=text("RequestedProcedureID"),
            requested_procedure_description=text("RequestedProcedureDescription"),
            procedure_code=code if code and code.value else None,
            requesting_physician=text("RequestingPhysician"),
            referring_physician=text("ReferringPhysicianName"),
        )


@dataclass(frozen=True)
class ResultDocument:
    """One analyzer's result on one study generation, with its study and order.

    ``sr_instance_uid``: the SOP Instance UID of the SR this result is the EMR form of; it
    names one content (see :mod:`integrations.dicom.result_inputs`), so a result of other
    inputs is another result with other identifiers, and a rerun of the same is the same.
    ``final``: the AI will not revise it for these inputs (HL7 F, FHIR final).
    ``replaces``: the report UID of an earlier final result for the same study and analyzer
    that this one corrects (HL7 C, FHIR amended); empty for a first result.
    """

    study: StudyFacts
    order: OrderInfo
    generation: int
    analysis: AnalysisResult
    created_at: datetime
    sr_instance_uid: str = ""
    final: bool = True
    replaces: str = ""

    @property
    def report_uid(self) -> str:
        """Identifies this result everywhere (MSH-10 and FHIR identifiers derive from it)."""
        if self.sr_instance_uid:
            return derived_uid(
                "oru", self.study.study_instance_uid, self.analysis.analyzer, self.sr_instance_uid
            )
        return derived_uid(
            "oru",
            self.study.study_instance_uid,
            self.generation,
            self.analysis.analyzer,
            self.analysis.model.version,
        )

    @property
    def corrects_final(self) -> bool:
        """A final result that replaces an earlier final one (a correction downstream)."""
        return self.final and bool(self.replaces)

    def to_json(self) -> dict[str, Any]:
        analysis = self.analysis.to_json()
        analysis["heatmaps"] = []  # pixels stay out of the outbox
        return {
            "kind": DOCUMENT_KIND,
            "version": DOCUMENT_VERSION,
            "study": {**asdict(self.study), "modalities": list(self.study.modalities)},
            "order": asdict(self.order),
            "generation": self.generation,
            "analysis": analysis,
            "created_at": self.created_at.isoformat(),
            "sr_instance_uid": self.sr_instance_uid,
            "final": self.final,
            "replaces": self.replaces,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResultDocument:
        if data.get("kind") != DOCUMENT_KIND:
            raise ValueError(f"not a result document: kind {data.get('kind')!r}")
        study = dict(data["study"])
        study["modalities"] = tuple(study.get("modalities") or ())
        order = dict(data["order"])
        if order.get("procedure_code"):
            order["procedure_code"] = CodedConcept(**order["procedure_code"])
        return cls(
            study=StudyFacts(**study),
            order=OrderInfo(**order),
            generation=int(data["generation"]),
            analysis=AnalysisResult.from_json(data["analysis"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            sr_instance_uid=str(data.get("sr_instance_uid", "")),
            # documents queued before result status existed were sent as preliminary
            final=bool(data.get("final", False)),
            replaces=str(data.get("replaces", "")),
        )
