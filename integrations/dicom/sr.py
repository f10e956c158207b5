"""The TID 1500 Measurement Report of one analysis, as IHE AI Results asks (pure).

One Comprehensive 3D SR per study and analysis. Its content tree::

    Imaging Measurement Report (TID 1500)
    ├── language, device observer (the AI model, its device UID), procedure reported
    ├── Imaging Measurements
    │   └── Measurement Group (TID 1501), one per label evaluated
    │       ├── Tracking Identifier (label) + Tracking UID (same patient + label = same UID)
    │       ├── Finding (DCM 121071) = the SNOMED CT (or other) code of the label
    │       ├── Algorithm Identification (TID 4019): name, version, manufacturer, parameters
    │       ├── Source images (and frames) the finding refers to
    │       ├── Probability (DCM 122157), Threshold Value (DCM 122411), measurements (UCUM)
    │       ├── interval change against the prior: value on prior, change, change in percent
    │       └── Presence of property (DCM 121052) = Present / Absent; urgency tier when present
    └── Qualitative Evaluations (UMLS C0034375)
        ├── AI urgency tier of the study
        ├── Not analysable: reason (when the analysis could not run)
        └── Prior comparison summary, prior study UID, date and accession

Result status, as IHE AI Results (AIR, Rad TF-3 "AI Result" SR content) and PS3.3 C.17.2
(SR Document General Module) use the flags: Completion Flag COMPLETE (the document holds
everything the AI concluded from its inputs), Verification Flag UNVERIFIED (no person has
attested it: verification is a human act, outside the AI's result) and Preliminary Flag FINAL
(the AI will not revise this document for these inputs). When the inputs change (late images,
another model version, a changed threshold or site rule, a prior now available) a new SR with
new UIDs replaces it and names it in the Predecessor Documents Sequence (C.17.2.1); the one
it replaces is recorded as superseded, so a study has at most one live final per analyzer.
``final=False`` writes PRELIMINARY instead, for a result its creator expects to revise.

Carriers the output profile asks for but the source headers cannot have (e.g. no Frame of
Reference for a Parametric Map) are stated in the Qualitative Evaluations, with the reason.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Sequence

from highdicom.sr import (
    AlgorithmIdentification,
    CodeContentItem,
    CodedConcept,
    Comprehensive3DSR,
    ContainerContentItem,
    ContentItem,
    ContentSequence,
    DeviceObserverIdentifyingAttributes,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    RelationshipTypeValues,
    SourceImageForMeasurementGroup,
    TextContentItem,
    TrackingIdentifier,
)
from highdicom.sr import Measurement as SRMeasurement
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import Comprehensive3DSRStorage

from integrations.dicom import result_codes
from integrations.dicom.result_common import (
    BUILD_CHARACTER_SET,
    BuildContext,
    ResultKind,
    SkippedCarrier,
    check_frame,
    finish_series,
    header_copy,
    index_sources,
    source_for,
)
from integrations.dicom.result_inputs import report_inputs_digest
from integrations.dicom.uids import derived_uid
from integrations.settings import ResultsSettings
from models.interval_change import PriorComparison
from models.results import NOT_FOR_CLINICAL_USE, AnalysisResult, Finding, UrgencyTier

REPORT_TITLE = CodedConcept.from_code(codes.cid7021.ImagingMeasurementReport)
ANALYZER_PARAMETER_PREFIX = "analyzer="
THRESHOLD_PARAMETER_PREFIX = "threshold="


def load_standard_tables() -> None:
    """Have highdicom read the standard's IOD and module tables now: it parses them (JSON,
    about 0.4 s) the first time an SR is built, which would otherwise be the first study's
    wait. A private highdicom helper; without it (another release) nothing is done."""
    try:
        from highdicom._standard_utils import is_attribute_in_iod
    except ImportError:
        return
    is_attribute_in_iod("PatientName", Comprehensive3DSRStorage)


@dataclasses.dataclass(frozen=True)
class PredecessorReport:
    """The SR a new one replaces (Predecessor Documents Sequence, PS3.3 C.17.2.1)."""

    sop_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str = Comprehensive3DSRStorage


def build_measurement_report(
    analysis: AnalysisResult,
    sources: Sequence[Dataset],
    *,
    profile: ResultsSettings,
    generation: int = 1,
    prior: PriorComparison | None = None,
    now: datetime.datetime | None = None,
    predecessor: PredecessorReport | None = None,
    not_produced: Sequence[SkippedCarrier] = (),
    final: bool = True,
) -> Comprehensive3DSR:
    """The SR for ``analysis`` of the study ``sources`` belong to (headers are enough).

    ``sources`` are the study's images the analyzer was given; the analysed ones become the
    evidence (all of them when the study was not analysable). ``predecessor``: the SR this
    one replaces, if any. ``not_produced``: the carriers that will not be built, stated with
    their reasons. Raises ValueError or TypeError naming the argument when the inputs are
    inconsistent.
    """
    context = BuildContext.for_study(analysis, sources, profile, generation, now)
    if prior is not None and not isinstance(prior, PriorComparison):
        raise TypeError("prior must be a PriorComparison or None")
    if predecessor is not None and not isinstance(predecessor, PredecessorReport):
        raise TypeError("predecessor must be a PredecessorReport or None")
    context = dataclasses.replace(
        context, input_digest=report_inputs_digest(context.input_digest, prior)
    )
    _check_findings(analysis)
    by_uid = index_sources(sources)
    headers = {uid: header_copy(source) for uid, source in by_uid.items()}
    evidence = [
        headers[source_for(reference, headers, "analysis.analysed_images").SOPInstanceUID]
        for reference in analysis.analysed_images
    ] or list(headers.values())
    first = evidence[0]

    groups = [
        _finding_group(finding, context, headers, first, prior) for finding in analysis.findings
    ]
    report = _report(context, first, groups, prior, not_produced)
    kind = ResultKind.SR
    previous_versions = None
    # The predecessor is part of the content, so it is part of the UID: going back to earlier
    # inputs gives a new SR that names the one it replaces, never the first UID again.
    sop_instance_uid = context.sop_instance_uid(
        kind, "after", predecessor.sop_instance_uid if predecessor else "none"
    )
    if predecessor is not None:
        replaced = Dataset()
        replaced.SOPClassUID = predecessor.sop_class_uid
        replaced.SOPInstanceUID = predecessor.sop_instance_uid
        replaced.StudyInstanceUID = context.study_instance_uid
        replaced.SeriesInstanceUID = predecessor.series_instance_uid
        previous_versions = [replaced]
    document = Comprehensive3DSR(
        specific_character_set=BUILD_CHARACTER_SET,
        evidence=evidence,
        content=report,
        series_instance_uid=context.series_instance_uid(kind),
        series_number=context.series_number(kind),
        sop_instance_uid=sop_instance_uid,
        instance_number=context.instance_number(),
        manufacturer=profile.manufacturer,
        is_complete=True,
        is_final=final,
        is_verified=False,
        institution_name=context.institution_name(first),
        previous_versions=previous_versions,
        record_evidence=True,
        manufacturer_model_name=analysis.model.name[:64],
        software_versions=context.software_versions,
        device_serial_number=context.device_serial_number,
    )
    return finish_series(document, context=context, kind=kind, source=first)


def tracking_uid(analysis: AnalysisResult, finding: Finding, source: Dataset) -> str:
    """Same patient, analyzer and finding code: same Tracking UID, in every study.

    That is what lets a later SR (or a prior comparison) refer to "the same finding". Without
    a Patient ID the UID is scoped to the study.
    """
    patient = str(source.get("PatientID", "") or "")
    issuer = str(source.get("IssuerOfPatientID", "") or "")
    scope = f"patient:{issuer}:{patient}" if patient else f"study:{source.StudyInstanceUID}"
    return derived_uid(
        "pacsflow-tracking", scope, analysis.analyzer, finding.code.scheme, finding.code.value
    )


def _check_findings(analysis: AnalysisResult) -> None:
    if analysis.status not in ("analysed", "not_analysable"):
        raise ValueError(f"analysis.status is not a known status: {analysis.status!r}")
    if analysis.status == "not_analysable" and not (analysis.reason or "").strip():
        raise ValueError("analysis.reason must say why the study is not analysable")
    labels = [finding.label for finding in analysis.findings]
    if len(set(labels)) != len(labels):
        raise ValueError("analysis.findings must not repeat a label")
    for finding in analysis.findings:
        where = f"analysis.findings[{finding.label!r}]"
        if not finding.label.strip():
            raise ValueError(f"{where}.label must not be empty")
        for name, value in (("probability", finding.probability), ("threshold", finding.threshold)):
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{where}.{name} must be within [0, 1], got {value!r}")
        if not isinstance(finding.tier, UrgencyTier):
            raise TypeError(f"{where}.tier must be an UrgencyTier")
        for measurement in finding.measurements:
            if measurement.unit.scheme != "UCUM":
                raise ValueError(
                    f"{where} measurement {measurement.name.meaning!r} must use a UCUM unit, "
                    f"got scheme {measurement.unit.scheme!r}"
                )
            if not math.isfinite(measurement.value):
                raise ValueError(f"{where} measurement {measurement.name.meaning!r} is not finite")


def _algorithm_identification(
    analysis: AnalysisResult, finding: Finding
) -> AlgorithmIdentification:
    model = analysis.model
    return AlgorithmIdentification(
        name=model.name,
        version=model.version,
        manufacturer=model.manufacturer,
        parameters=[
            f"{ANALYZER_PARAMETER_PREFIX}{analysis.analyzer}",
            f"{THRESHOLD_PARAMETER_PREFIX}{finding.threshold:g}",
            *([NOT_FOR_CLINICAL_USE] if not analysis.clinical_use else []),
        ],
    )


def _finding_group(
    finding: Finding,
    context: BuildContext,
    headers: dict[str, Dataset],
    first: Dataset,
    prior: PriorComparison | None,
) -> MeasurementsAndQualitativeEvaluations:
    analysis = context.analysis
    where = f"analysis.findings[{finding.label!r}].images"
    source_images = []
    for reference in finding.images:
        image = source_for(reference, headers, where)
        frame = check_frame(reference, image, where)
        source_images.append(
            SourceImageForMeasurementGroup.from_source_image(
                image, referenced_frame_numbers=[frame] if frame else None
            )
        )
    measurements = [
        SRMeasurement(result_codes.PROBABILITY, finding.probability, result_codes.NO_UNITS),
        SRMeasurement(result_codes.THRESHOLD, finding.threshold, result_codes.NO_UNITS),
    ]
    measurements += [
        SRMeasurement(
            result_codes.to_coded(item.name), item.value, result_codes.to_coded(item.unit)
        )
        for item in finding.measurements
    ]
    if prior is not None and prior.compared:
        measurements += _interval_change(finding, prior)
    evaluations = [
        QualitativeEvaluation(
            result_codes.PRESENCE, result_codes.PRESENT if finding.present else result_codes.ABSENT
        )
    ]
    if finding.present:
        evaluations.append(
            QualitativeEvaluation(result_codes.URGENCY_TIER, result_codes.TIER_VALUES[finding.tier])
        )
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=tracking_uid(analysis, finding, first), identifier=finding.label
        ),
        finding_type=result_codes.to_coded(finding.code),
        algorithm_id=_algorithm_identification(analysis, finding),
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=source_images or None,
    )


def _interval_change(finding: Finding, prior: PriorComparison) -> list[SRMeasurement]:
    items: list[SRMeasurement] = []
    for change in prior.changes:
        if change.label != finding.label:
            continue
        unit = result_codes.to_coded(change.unit)
        values = [
            (result_codes.PRIOR_VALUE, change.prior_value, unit),
            (result_codes.INTERVAL_CHANGE, change.absolute_change, unit),
        ]
        if change.percent_change is not None:
            values.append(
                (result_codes.INTERVAL_CHANGE_PERCENT, change.percent_change, result_codes.PERCENT)
            )
        for name, value, value_unit in values:
            measurement = SRMeasurement(name, value, value_unit)
            quantity = CodeContentItem(
                name=result_codes.QUANTITY,
                value=result_codes.to_coded(change.quantity),
                relationship_type=RelationshipTypeValues.HAS_CONCEPT_MOD,
            )
            measurement[0].ContentSequence = [quantity]
            items.append(measurement)
    return items


def _report(
    context: BuildContext,
    first: Dataset,
    groups: list[MeasurementsAndQualitativeEvaluations],
    prior: PriorComparison | None,
    not_produced: Sequence[SkippedCarrier],
) -> MeasurementReport:
    model = context.analysis.model
    observation_context = ObservationContext(
        observer_device_context=ObserverContext(
            observer_type=codes.cid270.Device,
            observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
                uid=context.device_uid,
                name=model.name,
                manufacturer_name=model.manufacturer,
                model_name=model.name,
                serial_number=context.device_serial_number,
            ),
        )
    )
    placeholder = not groups
    if placeholder:
        # highdicom insists on one measurement group; TID 1500 only needs one of Imaging
        # Measurements or Qualitative Evaluations, so the placeholder is removed below.
        groups = [
            MeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(
                    uid=derived_uid("pacsflow-placeholder", context.input_digest),
                    identifier="placeholder",
                )
            )
        ]
    report = MeasurementReport(
        observation_context=observation_context,
        procedure_reported=_procedure_reported(first),
        imaging_measurements=groups,
        title=REPORT_TITLE,
    )
    root = report[0]
    if placeholder:
        root.ContentSequence = [
            item
            for item in root.ContentSequence
            if not (
                item.ValueType == "CONTAINER"
                and result_codes.same_code(
                    item.name, CodedConcept.from_code(codes.DCM.ImagingMeasurements)
                )
            )
        ]
    root.ContentSequence.append(_qualitative_evaluations(context, prior, not_produced))
    return report


def _procedure_reported(first: Dataset) -> CodedConcept:
    procedure = first.get("ProcedureCodeSequence")
    if procedure:
        item = procedure[0]
        if item.get("CodeValue") and item.get("CodingSchemeDesignator") and item.get("CodeMeaning"):
            return CodedConcept(
                value=str(item.CodeValue),
                scheme_designator=str(item.CodingSchemeDesignator),
                meaning=str(item.CodeMeaning)[:64],
            )
    modality = str(first.get("Modality", "") or "").upper()
    return result_codes.PROCEDURE_BY_MODALITY.get(modality, result_codes.IMAGING_PROCEDURE)


def _qualitative_evaluations(
    context: BuildContext, prior: PriorComparison | None, not_produced: Sequence[SkippedCarrier]
) -> ContainerContentItem:
    analysis = context.analysis
    contains = RelationshipTypeValues.CONTAINS
    items: list[ContentItem] = [
        CodeContentItem(
            name=result_codes.URGENCY_TIER,
            value=result_codes.TIER_VALUES[analysis.tier],
            relationship_type=contains,
        ),
        TextContentItem(
            name=result_codes.ANALYZER, value=analysis.analyzer, relationship_type=contains
        ),
    ]
    if not analysis.clinical_use:
        items.append(
            TextContentItem(
                name=result_codes.CLINICAL_USE_NOTICE,
                value=analysis.clinical_use_notice,
                relationship_type=contains,
            )
        )
    if analysis.status == "not_analysable":
        items.append(
            TextContentItem(
                name=result_codes.NOT_ANALYSABLE,
                value=(analysis.reason or "").strip(),
                relationship_type=contains,
            )
        )
    for skipped in not_produced:
        items.append(
            TextContentItem(
                name=result_codes.CARRIER_NOT_PRODUCED,
                value=skipped.describe()[:1024],
                relationship_type=contains,
            )
        )
    if prior is not None:
        items.append(
            TextContentItem(
                name=result_codes.PRIOR_STATUS, value=prior.summary(), relationship_type=contains
            )
        )
        if prior.prior_study_instance_uid:
            items.append(
                TextContentItem(
                    name=result_codes.PRIOR_STUDY_UID,
                    value=prior.prior_study_instance_uid,
                    relationship_type=contains,
                )
            )
            if prior.prior_study_date is not None:
                items.append(
                    TextContentItem(
                        name=result_codes.PRIOR_STUDY_DATE,
                        value=prior.prior_study_date.isoformat(),
                        relationship_type=contains,
                    )
                )
            if prior.prior_accession_number:
                items.append(
                    TextContentItem(
                        name=result_codes.PRIOR_ACCESSION,
                        value=prior.prior_accession_number,
                        relationship_type=contains,
                    )
                )
    container = ContainerContentItem(
        name=result_codes.QUALITATIVE_EVALUATIONS, relationship_type=contains
    )
    container.ContentSequence = ContentSequence(items)
    return container
