"""Fuzzing the SR builder's input: any analysis result a model could return (property test).

``build_result_objects(part="report")`` is what the ``build_results`` task calls first with
an analyzer's :class:`~models.results.AnalysisResult`. This harness gives it generated
results: any text in labels, codes, model identity and reasons; probabilities, thresholds and
measurements that are NaN, infinite or out of range; units outside UCUM; findings that point
at images the study does not have; unknown statuses; and source images whose names and
identifiers carry any text.

Documented exceptions, the only ones allowed: :class:`ValueError` and :class:`TypeError`
naming what is wrong (the builders validate up front, as highdicom's constructors do; the
task marks the study failed and says why). An SR that is built must encode, decode and read
back through our own reader with the same findings in the same order.
"""

from __future__ import annotations

import datetime
import math

from hypothesis import example, given
from hypothesis import strategies as st

from integrations.dicom.result_common import decode_dataset, encode_dataset
from integrations.dicom.result_objects import build_result_objects
from integrations.dicom.sr_reader import read_measurement_report
from integrations.settings import ResultsSettings
from models.results import (
    AnalysisResult,
    CodedConcept,
    Finding,
    ImageReference,
    Measurement,
    ModelIdentity,
    UrgencyTier,
)
from tests.faults.fuzzing import fuzz_settings
from tests.unit.results import synthetic

DOCUMENTED = (ValueError, TypeError)
PROFILE = ResultsSettings(carriers=["sr"])
NOW = datetime.datetime(2026, 12, 1, 12, 0, 0)
IMAGE, _ = synthetic.chest_radiograph(shape=(32, 32), lesion=synthetic.Lesion((10, 10), (3, 3)))
OWN_REFERENCE = synthetic.reference(IMAGE)

any_text = st.text(max_size=80)
number = st.one_of(
    st.floats(0.0, 1.0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, -0.0, 1e-300, 1 - 1e-16]),
)
concept = st.builds(
    CodedConcept,
    value=st.one_of(st.sampled_from(["36118008", "121071"]), any_text),
    scheme=st.one_of(st.sampled_from(["SCT", "DCM", "UCUM", "99PACSFLOW"]), any_text),
    meaning=any_text,
)
unit = st.one_of(
    st.builds(
        CodedConcept,
        value=st.sampled_from(["mm", "mL", "1"]),
        scheme=st.just("UCUM"),
        meaning=any_text,
    ),
    concept,
)
image_reference = st.one_of(
    st.just(OWN_REFERENCE),
    st.builds(
        ImageReference,
        sop_class_uid=st.sampled_from([OWN_REFERENCE.sop_class_uid, "1.2.3", ""]),
        sop_instance_uid=st.sampled_from([OWN_REFERENCE.sop_instance_uid, "1.2.3.4", "x"]),
        series_instance_uid=st.sampled_from([OWN_REFERENCE.series_instance_uid, "1.2.3.5"]),
        frame_number=st.one_of(st.none(), st.integers(-2, 3)),
    ),
)
finding = st.builds(
    Finding,
    label=st.one_of(st.sampled_from(["pneumothorax", "effusion"]), any_text),
    code=concept,
    probability=number,
    threshold=number,
    present=st.booleans(),
    tier=st.sampled_from(list(UrgencyTier)),
    images=st.lists(image_reference, max_size=2).map(tuple),
    measurements=st.lists(
        st.builds(Measurement, name=concept, value=number, unit=unit), max_size=2
    ).map(tuple),
)
model = st.builds(
    ModelIdentity,
    name=st.one_of(st.just("cxr-densenet121"), any_text),
    version=st.one_of(st.just("1.2.0"), any_text),
    manufacturer=st.one_of(st.just("pacsflow"), any_text),
    weights_sha256=st.one_of(st.just("ab" * 32), any_text),
    clinical_use=st.booleans(),
    intended_use=any_text,
)
analysis = st.builds(
    AnalysisResult,
    analyzer=st.one_of(st.just("chest-xray"), any_text),
    model=model,
    status=st.sampled_from(["analysed", "not_analysable", "failed"]),
    findings=st.lists(finding, max_size=3).map(tuple),
    reason=st.one_of(st.none(), any_text),
    analysed_images=st.lists(image_reference, max_size=2).map(tuple),
)


def build_and_read_back(result: AnalysisResult) -> None:
    try:
        built = build_result_objects(result, [IMAGE], profile=PROFILE, now=NOW, part="report")
    except DOCUMENTED as error:
        assert str(error)  # says what is wrong
        return
    (report,) = built.objects
    data = encode_dataset(report.dataset)
    again = read_measurement_report(decode_dataset(data))
    assert again.sop_instance_uid == report.sop_instance_uid
    assert again.study_instance_uid == IMAGE.StudyInstanceUID
    assert [item.label for item in again.findings] == [item.label for item in result.findings]
    for written, read in zip(result.findings, again.findings, strict=True):
        assert read.present == written.present
        assert read.probability is not None and math.isclose(
            read.probability, written.probability, rel_tol=1e-6, abs_tol=1e-9
        )


def test_the_seed_analysis_builds_and_reads_back() -> None:
    seed = synthetic.chest_analysis(IMAGE, synthetic.Lesion((10, 10), (3, 3)))
    build_and_read_back(seed)
    built = build_result_objects(seed, [IMAGE], profile=PROFILE, now=NOW, part="report")
    assert len(read_measurement_report(built.objects[0].dataset).findings) == 2


@fuzz_settings(examples=80)
@given(result=analysis)
@example(
    result=AnalysisResult(
        analyzer="chest-xray", model=synthetic.MODEL, status="not_analysable", reason=" "
    )
)
def test_any_analysis_result_gives_a_readable_sr_or_a_documented_error(
    result: AnalysisResult,
) -> None:
    build_and_read_back(result)


@fuzz_settings(examples=15)  # about 0.2 s each: a new image per example
@given(
    patient_name=st.text(max_size=40),
    patient_id=st.text(max_size=20),
    accession_number=st.text(max_size=20),
    character_set=st.sampled_from([None, "ISO_IR 100", "ISO_IR 192", "ISO_IR 6"]),
)
def test_source_images_with_any_names_give_a_readable_sr_or_a_documented_error(
    patient_name: str, patient_id: str, accession_number: str, character_set: str | None
) -> None:
    lesion = synthetic.Lesion((10, 10), (3, 3))
    try:
        image, _ = synthetic.chest_radiograph(
            shape=(32, 32),
            lesion=lesion,
            patient_name=patient_name,
            patient_id=patient_id,
            accession_number=accession_number,
            character_set=character_set,
        )
    except DOCUMENTED:
        return  # pydicom would not let such an image be made, so no node would receive one
    result = synthetic.chest_analysis(image, lesion)
    try:
        built = build_result_objects(result, [image], profile=PROFILE, now=NOW, part="report")
    except DOCUMENTED:
        return
    again = read_measurement_report(decode_dataset(encode_dataset(built.objects[0].dataset)))
    assert [item.label for item in again.findings] == ["pneumothorax", "effusion"]
