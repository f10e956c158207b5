"""Read the findings and measurements back from a pacsflow Measurement Report (pure).

Used for prior comparison (the PACS holds the SR of an earlier study) and by tests that
check what the PACS stored. It parses with highdicom, so any TID 1500 report can be read; a
report is recognised as pacsflow's when its Qualitative Evaluations name the analyzer.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import cast

from highdicom.sr import (
    CodedConcept,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ValueTypeValues,
)
from highdicom.sr.utils import find_content_items
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import Comprehensive3DSRStorage

from integrations.dicom import result_codes
from integrations.dicom.sr import ANALYZER_PARAMETER_PREFIX
from integrations.errors import DatasetError
from models.interval_change import PriorStudy
from models.results import CodedConcept as ResultConcept
from models.results import (
    Finding,
    ImageReference,
    Measurement,
    UrgencyTier,
)

_PROTOCOL_CODES = (result_codes.PROBABILITY, result_codes.THRESHOLD)
_CHANGE_CODES = (
    result_codes.PRIOR_VALUE,
    result_codes.INTERVAL_CHANGE,
    result_codes.INTERVAL_CHANGE_PERCENT,
)


@dataclass(frozen=True)
class ReportedChange:
    """An interval-change item of a finding: which quantity, what kind, the value and unit."""

    quantity: ResultConcept
    kind: ResultConcept  # value on prior, interval change, interval change percent
    value: float
    unit: ResultConcept


@dataclass(frozen=True)
class ReportedFinding:
    """One measurement group of the report, as pacsflow wrote it."""

    label: str
    code: ResultConcept
    present: bool | None
    probability: float | None
    threshold: float | None
    tier: UrgencyTier | None
    tracking_uid: str
    measurements: tuple[Measurement, ...] = ()
    images: tuple[ImageReference, ...] = ()
    changes: tuple[ReportedChange, ...] = ()
    algorithm_name: str = ""
    algorithm_version: str = ""


@dataclass(frozen=True)
class ReportedAnalysis:
    """What one pacsflow SR says about its study."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    study_date: datetime.date | None
    accession_number: str
    patient_id: str
    patient_name: str
    content_datetime: datetime.datetime | None
    analyzer: str
    tier: UrgencyTier | None
    not_analysable_reason: str | None
    prior_summary: str | None
    findings: tuple[ReportedFinding, ...]
    device_observer_uid: str = ""

    @property
    def model_version(self) -> str:
        return next((f.algorithm_version for f in self.findings if f.algorithm_version), "")

    def finding(self, label: str) -> ReportedFinding:
        for item in self.findings:
            if item.label == label:
                return item
        raise KeyError(label)

    def to_prior_study(self) -> PriorStudy:
        """The report as the prior side of an interval-change comparison."""
        return PriorStudy(
            study_instance_uid=self.study_instance_uid,
            study_date=self.study_date,
            accession_number=self.accession_number,
            findings=tuple(
                Finding(
                    label=item.label,
                    code=item.code,
                    probability=item.probability if item.probability is not None else 0.0,
                    threshold=item.threshold if item.threshold is not None else 0.0,
                    present=bool(item.present),
                    tier=item.tier or UrgencyTier.ROUTINE,
                    images=item.images,
                    measurements=item.measurements,
                )
                for item in self.findings
            ),
            origin="sr",
        )


def is_pacsflow_report(dataset: Dataset) -> bool:
    """A Comprehensive 3D SR with a TID 1500 root whose evaluations name a pacsflow analyzer."""
    if str(dataset.get("SOPClassUID", "")) != Comprehensive3DSRStorage:
        return False
    templates = dataset.get("ContentTemplateSequence") or []
    if not templates or str(templates[0].get("TemplateIdentifier", "")) != "1500":
        return False
    return bool(_evaluation_texts(dataset, result_codes.ANALYZER))


def read_measurement_report(dataset: Dataset) -> ReportedAnalysis:
    """Parse a pacsflow SR; DatasetError when it is not one or cannot be read."""
    if not isinstance(dataset, Dataset):
        raise TypeError("dataset must be a pydicom Dataset")
    if not is_pacsflow_report(dataset):
        raise DatasetError("not a pacsflow Measurement Report (Comprehensive 3D SR, TID 1500)")
    try:
        document = Comprehensive3DSR.from_dataset(dataset, copy=True)
        report = MeasurementReport.from_sequence(document.content)
        groups = report.get_image_measurement_groups()
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise DatasetError(f"cannot read the Measurement Report: {error}") from None
    tiers = _evaluation_codes(dataset, result_codes.URGENCY_TIER)
    reasons = _evaluation_texts(dataset, result_codes.NOT_ANALYSABLE)
    summaries = _evaluation_texts(dataset, result_codes.PRIOR_STATUS)
    observers = report.get_observer_contexts(observer_type=codes.DCM.Device)
    device_uid = ""
    if observers:
        attributes = observers[0].observer_identifying_attributes
        if isinstance(attributes, DeviceObserverIdentifyingAttributes):
            device_uid = str(attributes.uid)
    return ReportedAnalysis(
        sop_instance_uid=str(dataset.SOPInstanceUID),
        series_instance_uid=str(dataset.SeriesInstanceUID),
        study_instance_uid=str(dataset.StudyInstanceUID),
        study_date=_date(dataset.get("StudyDate")),
        accession_number=str(dataset.get("AccessionNumber", "") or ""),
        patient_id=str(dataset.get("PatientID", "") or ""),
        patient_name=str(dataset.get("PatientName", "") or ""),
        content_datetime=_datetime(dataset.get("ContentDate"), dataset.get("ContentTime")),
        analyzer=_evaluation_texts(dataset, result_codes.ANALYZER)[0],
        tier=_tier(tiers[0]) if tiers else None,
        not_analysable_reason=reasons[0] if reasons else None,
        prior_summary=summaries[0] if summaries else None,
        findings=tuple(_finding(group) for group in groups),
        device_observer_uid=device_uid,
    )


def _finding(group: MeasurementsAndQualitativeEvaluations) -> ReportedFinding:
    finding_type = group.finding_type
    if finding_type is None:
        raise DatasetError("a measurement group has no Finding")
    probability = threshold = None
    measurements: list[Measurement] = []
    changes: list[ReportedChange] = []
    for measurement in group.get_measurements():
        name = measurement.name
        if result_codes.same_code(name, result_codes.PROBABILITY):
            probability = float(measurement.value)
        elif result_codes.same_code(name, result_codes.THRESHOLD):
            threshold = float(measurement.value)
        elif any(result_codes.same_code(name, code) for code in _CHANGE_CODES):
            quantities = find_content_items(
                measurement[0], name=result_codes.QUANTITY, value_type=ValueTypeValues.CODE
            )
            if quantities:
                changes.append(
                    ReportedChange(
                        quantity=result_codes.from_coded(quantities[0].value),
                        kind=result_codes.from_coded(name),
                        value=float(measurement.value),
                        unit=result_codes.from_coded(measurement.unit),
                    )
                )
        else:
            measurements.append(
                Measurement(
                    name=result_codes.from_coded(name),
                    value=float(measurement.value),
                    unit=result_codes.from_coded(measurement.unit),
                )
            )
    present = None
    tier = None
    for evaluation in group.get_qualitative_evaluations():
        # highdicom annotates the value as a number; for a CODE item it is a CodedConcept.
        value = cast(CodedConcept, evaluation.value)
        if result_codes.same_code(evaluation.name, result_codes.PRESENCE):
            if result_codes.same_code(value, result_codes.PRESENT):
                present = True
            elif result_codes.same_code(value, result_codes.ABSENT):
                present = False
        elif result_codes.same_code(evaluation.name, result_codes.URGENCY_TIER):
            tier = _tier(value)
    images = tuple(
        ImageReference(
            sop_class_uid=str(item.referenced_sop_class_uid),
            sop_instance_uid=str(item.referenced_sop_instance_uid),
            series_instance_uid="",
            frame_number=int(item.referenced_frame_numbers[0])
            if item.referenced_frame_numbers
            else None,
        )
        for item in group.source_images
    )
    return ReportedFinding(
        label=str(group.tracking_identifier or finding_type.meaning),
        code=result_codes.from_coded(finding_type),
        present=present,
        probability=probability,
        threshold=threshold,
        tier=tier,
        tracking_uid=str(group.tracking_uid or ""),
        measurements=tuple(measurements),
        images=images,
        changes=tuple(changes),
        algorithm_name=_group_text(group, codes.DCM.AlgorithmName),
        algorithm_version=_group_text(group, codes.DCM.AlgorithmVersion),
    )


def analyzer_of(finding_group: MeasurementsAndQualitativeEvaluations) -> str:
    """The analyzer named in a group's algorithm parameters ("" when absent)."""
    for item in find_content_items(finding_group[0], name=codes.DCM.AlgorithmParameters):
        value = str(item.value)
        if value.startswith(ANALYZER_PARAMETER_PREFIX):
            return value[len(ANALYZER_PARAMETER_PREFIX) :]
    return ""


def _group_text(group: MeasurementsAndQualitativeEvaluations, name: object) -> str:
    items = find_content_items(group[0], name=name, value_type=ValueTypeValues.TEXT)  # type: ignore[arg-type]
    return str(items[0].value) if items else ""


def _evaluations_container(dataset: Dataset) -> list[Dataset]:
    return find_content_items(
        dataset, name=result_codes.QUALITATIVE_EVALUATIONS, value_type=ValueTypeValues.CONTAINER
    )


def _evaluation_texts(dataset: Dataset, name: CodedConcept) -> list[str]:
    texts: list[str] = []
    for container in _evaluations_container(dataset):
        for item in container.get("ContentSequence", []):
            if item.ValueType == "TEXT" and _item_named(item, name):
                texts.append(str(item.TextValue))
    return texts


def _evaluation_codes(dataset: Dataset, name: CodedConcept) -> list[CodedConcept]:
    values: list[CodedConcept] = []
    for container in _evaluations_container(dataset):
        for item in container.get("ContentSequence", []):
            if item.ValueType == "CODE" and _item_named(item, name):
                code = item.ConceptCodeSequence[0]
                values.append(
                    CodedConcept(
                        value=str(code.CodeValue),
                        scheme_designator=str(code.CodingSchemeDesignator),
                        meaning=str(code.CodeMeaning),
                    )
                )
    return values


def _item_named(item: Dataset, name: CodedConcept) -> bool:
    concept = item.ConceptNameCodeSequence[0]
    return (str(concept.CodeValue), str(concept.CodingSchemeDesignator)) == (
        str(name.value),
        str(name.scheme_designator),
    )


def _tier(value: CodedConcept) -> UrgencyTier | None:
    for tier, code in result_codes.TIER_VALUES.items():
        if result_codes.same_code(value, code):
            return tier
    return None


def _date(value: object) -> datetime.date | None:
    text = str(value or "").strip()
    try:
        return datetime.datetime.strptime(text[:8], "%Y%m%d").date() if text else None
    except ValueError:
        return None


def _datetime(date: object, time: object) -> datetime.datetime | None:
    day = _date(date)
    if day is None:
        return None
    text = str(time or "").strip().split(".")[0].ljust(6, "0")[:6]
    try:
        clock = datetime.datetime.strptime(text, "%H%M%S").time()
    except ValueError:
        clock = datetime.time()
    return datetime.datetime.combine(day, clock)
