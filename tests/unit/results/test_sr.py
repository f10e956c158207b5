"""The TID 1500 Measurement Report: AIR content, round trip, character sets, UIDs, validation."""

from __future__ import annotations

import dataclasses
import datetime
import io

import highdicom as hd
import pytest
from pydicom.uid import Comprehensive3DSRStorage

from integrations.dicom import result_codes
from integrations.dicom.result_common import decode_dataset, encode_dataset
from integrations.dicom.sr import PredecessorReport, build_measurement_report, tracking_uid
from integrations.dicom.sr_reader import read_measurement_report
from models.interval_change import PriorStudy, compare_with_prior, no_prior
from models.results import CodedConcept, Measurement, UrgencyTier
from tests.dciodvfy import (
    RESULT_OBJECT_WARNINGS,
    assert_conformant,
)
from tests.unit.results import synthetic

NOW = synthetic.FIXED_NOW


def round_trip(dataset):
    return decode_dataset(encode_dataset(dataset))


def test_sr_carries_every_label_with_presence_probability_threshold_and_tier(chest, profile):
    image, _, _, analysis = chest
    report = read_measurement_report(
        round_trip(build_measurement_report(analysis, [image], profile=profile, now=NOW))
    )
    assert report.analyzer == analysis.analyzer
    assert report.tier == UrgencyTier.CRITICAL == analysis.tier
    assert report.not_analysable_reason is None
    assert [finding.label for finding in report.findings] == [f.label for f in analysis.findings]
    for written, expected in zip(report.findings, analysis.findings, strict=True):
        assert written.code == expected.code
        assert written.present is expected.present
        assert written.probability == pytest.approx(expected.probability)
        assert written.threshold == pytest.approx(expected.threshold)
        assert written.tier == (expected.tier if expected.present else None)
        assert [ref.sop_instance_uid for ref in written.images] == [
            ref.sop_instance_uid for ref in expected.images
        ]
        assert written.algorithm_name == analysis.model.name
        assert written.algorithm_version == analysis.model.version
        assert written.tracking_uid == tracking_uid(analysis, expected, image)


def test_sr_measurements_keep_their_ucum_units(head_ct, profile):
    images, _, _, analysis = head_ct
    report = read_measurement_report(
        round_trip(build_measurement_report(analysis, images, profile=profile, now=NOW))
    )
    (finding,) = report.findings
    assert finding.measurements == analysis.findings[0].measurements
    assert {m.unit.scheme for m in finding.measurements} == {"UCUM"}
    assert report.finding("hemorrhage").images[0].sop_instance_uid == images[1].SOPInstanceUID


def test_sr_follows_ihe_air_document_rules(chest, profile):
    image, _, _, analysis = chest
    sr = round_trip(build_measurement_report(analysis, [image], profile=profile, now=NOW))
    assert sr.SOPClassUID == Comprehensive3DSRStorage
    assert sr.VerificationFlag == "UNVERIFIED"
    assert sr.CompletionFlag == "COMPLETE"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == image.StudyInstanceUID
    referenced = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert referenced.ReferencedSOPInstanceUID == image.SOPInstanceUID
    algorithm = [
        item
        for item in sr.ContributingEquipmentSequence
        if item.PurposeOfReferenceCodeSequence[0].CodeValue
        == result_codes.PROCESSING_ALGORITHM.value
    ]
    assert len(algorithm) == 1
    item = algorithm[0]
    assert item.PurposeOfReferenceCodeSequence[0].CodeMeaning == "Processing Algorithm"
    assert (item.Manufacturer, item.ManufacturerModelName, item.SoftwareVersions) == (
        analysis.model.manufacturer,
        analysis.model.name,
        analysis.model.version,
    )
    acquisition = [
        item
        for item in sr.ContributingEquipmentSequence
        if item.PurposeOfReferenceCodeSequence[0].CodeValue == "109101"
    ]
    assert acquisition[0].Manufacturer == image.Manufacturer
    assert acquisition[0].ManufacturerModelName == image.ManufacturerModelName
    # The device observer of the report is the same device as the contributing algorithm.
    assert read_measurement_report(sr).device_observer_uid == item.DeviceUID


def test_sr_device_uid_changes_when_the_weights_change(chest, profile):
    image, _, lesion, analysis = chest
    retrained = dataclasses.replace(analysis.model, weights_sha256="ef" * 32)
    first = build_measurement_report(analysis, [image], profile=profile, now=NOW)
    again = build_measurement_report(analysis, [image], profile=profile, now=NOW)
    other = build_measurement_report(
        synthetic.chest_analysis(image, lesion, model=retrained), [image], profile=profile, now=NOW
    )

    def device_uid(sr):
        return sr.ContributingEquipmentSequence[-1].DeviceUID

    assert device_uid(first) == device_uid(again)
    assert device_uid(first) != device_uid(other)
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.SOPInstanceUID != other.SOPInstanceUID


def test_sr_copies_patient_and_study_from_the_source(chest, profile):
    image, _, _, analysis = chest
    sr = round_trip(build_measurement_report(analysis, [image], profile=profile, now=NOW))
    for keyword in (
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "StudyID",
        "AccessionNumber",
        "ReferringPhysicianName",
    ):
        assert str(sr[keyword].value) == str(image[keyword].value), keyword
    assert sr.InstitutionName == image.InstitutionName
    assert sr.Modality == "SR"


@pytest.mark.parametrize(
    ("character_set", "name", "expected_set"),
    [
        ("ISO_IR 100", "Müller^Jürgen", "ISO_IR 100"),
        ("ISO_IR 192", "Łukasz^Żółć", "ISO_IR 192"),
        ("ISO_IR 192", "山田^太郎=やまだ^たろう", "ISO_IR 192"),
        (None, "Doe^John", "ISO_IR 192"),  # the synthetic source has a non-ASCII institution
    ],
)
def test_sr_honours_the_specific_character_set(character_set, name, expected_set, profile):
    lesion = synthetic.Lesion((205.0, 78.0), (16.0, 12.0))
    image, _ = synthetic.chest_radiograph(
        lesion=lesion, patient_name=name, character_set=character_set
    )
    data = encode_dataset(
        build_measurement_report(
            synthetic.chest_analysis(image, lesion), [image], profile=profile, now=NOW
        )
    )
    sr = decode_dataset(data)
    assert sr.SpecificCharacterSet == expected_set
    assert str(sr.PatientName) == name
    assert sr.InstitutionName == "Hôpital Général"
    if expected_set == "ISO_IR 100":
        assert "Müller".encode("latin-1") in data
    else:
        assert name.split("^")[0].encode("utf-8") in data


def test_sr_switches_to_utf8_when_its_own_text_does_not_fit_latin1(profile):
    image, _ = synthetic.chest_radiograph(patient_name="Müller^Jürgen")
    analysis = synthetic.not_analysable(image, reason="lateral view — needs a PA film (側面)")
    sr = round_trip(build_measurement_report(analysis, [image], profile=profile, now=NOW))
    assert sr.SpecificCharacterSet == "ISO_IR 192"
    assert str(sr.PatientName) == "Müller^Jürgen"
    assert read_measurement_report(sr).not_analysable_reason == analysis.reason


def test_not_analysable_sr_says_why_and_still_lists_the_evidence(profile):
    image, _ = synthetic.chest_radiograph()
    analysis = synthetic.not_analysable(image)
    sr = round_trip(build_measurement_report(analysis, [image], profile=profile, now=NOW))
    report = read_measurement_report(sr)
    assert report.not_analysable_reason == "image is not a frontal chest radiograph"
    assert report.findings == ()
    assert report.tier == UrgencyTier.ROUTINE
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == image.SOPInstanceUID
    assert_conformant(encode_dataset(sr), allowed_warnings=RESULT_OBJECT_WARNINGS)


def test_a_replacing_sr_lands_in_the_same_series_and_names_its_predecessor(chest, profile):
    image, _, _, analysis = chest
    first = build_measurement_report(analysis, [image], profile=profile, generation=1, now=NOW)
    stricter = dataclasses.replace(
        analysis,
        findings=tuple(
            dataclasses.replace(finding, threshold=min(1.0, finding.threshold + 0.05))
            for finding in analysis.findings
        ),
    )
    second = build_measurement_report(
        stricter,
        [image],
        profile=profile,
        generation=2,
        now=NOW,
        predecessor=PredecessorReport(str(first.SOPInstanceUID), str(first.SeriesInstanceUID)),
    )
    assert second.SeriesInstanceUID == first.SeriesInstanceUID
    assert second.SOPInstanceUID != first.SOPInstanceUID
    assert int(second.InstanceNumber) > int(first.InstanceNumber)
    predecessor = second.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert "PredecessorDocumentsSequence" not in first
    # AIR: complete, final for its inputs, and not verified by a person.
    assert (second.CompletionFlag, second.PreliminaryFlag, second.VerificationFlag) == (
        "COMPLETE",
        "FINAL",
        "UNVERIFIED",
    )
    assert_conformant(encode_dataset(second), allowed_warnings=RESULT_OBJECT_WARNINGS)


def test_tracking_uid_follows_the_patient_across_studies():
    lesion = synthetic.Lesion((205.0, 78.0), (16.0, 12.0))
    earlier, _ = synthetic.chest_radiograph(lesion=lesion, study_key="a", study_date="20240101")
    later, _ = synthetic.chest_radiograph(lesion=lesion, study_key="b")
    someone_else, _ = synthetic.chest_radiograph(lesion=lesion, study_key="c", patient_id="PAT999")
    analysis = synthetic.chest_analysis(later, lesion)
    finding = analysis.findings[0]
    assert earlier.StudyInstanceUID != later.StudyInstanceUID
    assert tracking_uid(analysis, finding, earlier) == tracking_uid(analysis, finding, later)
    assert tracking_uid(analysis, finding, later) != tracking_uid(analysis, finding, someone_else)
    assert tracking_uid(analysis, finding, later) != tracking_uid(
        analysis, analysis.findings[1], later
    )


def test_sr_carries_interval_change_with_the_prior_date_and_accession(head_ct, profile):
    images, _, _, analysis = head_ct
    prior_finding = dataclasses.replace(
        analysis.findings[0],
        measurements=(
            Measurement(synthetic.VOLUME, 10.0, synthetic.MILLILITER),
            Measurement(synthetic.DIAMETER, 1.5, CodedConcept("cm", "UCUM", "cm")),
        ),
    )
    prior = PriorStudy("1.2.3.4", datetime.date(2024, 6, 1), "ACC-PRIOR", (prior_finding,))
    comparison = compare_with_prior(analysis, prior)
    sr = round_trip(
        build_measurement_report(analysis, images, profile=profile, prior=comparison, now=NOW)
    )
    report = read_measurement_report(sr)
    assert "2024-06-01" in report.prior_summary and "ACC-PRIOR" in report.prior_summary
    changes = {(c.quantity.meaning, c.kind.value): c.value for c in report.findings[0].changes}
    assert changes[("Volume", "ICPRIOR")] == pytest.approx(10.0)
    assert changes[("Volume", "ICABS")] == pytest.approx(2.5)
    assert changes[("Volume", "ICPCT")] == pytest.approx(25.0)
    assert changes[("Diameter", "ICPRIOR")] == pytest.approx(15.0)  # 1.5 cm in mm
    assert changes[("Diameter", "ICABS")] == pytest.approx(6.0)
    assert_conformant(encode_dataset(sr), allowed_warnings=RESULT_OBJECT_WARNINGS)


def test_sr_says_no_prior_available(chest, profile):
    image, _, _, analysis = chest
    sr = build_measurement_report(analysis, [image], profile=profile, prior=no_prior(), now=NOW)
    report = read_measurement_report(round_trip(sr))
    assert report.prior_summary == "no prior available"
    assert all(finding.changes == () for finding in report.findings)


@pytest.mark.parametrize("scenario", ["chest", "head_ct"])
def test_sr_passes_dciodvfy_and_highdicom_reads_it(scenario, request, profile):
    sources, _, _, analysis = request.getfixturevalue(scenario)
    sources = sources if isinstance(sources, list) else [sources]
    data = encode_dataset(build_measurement_report(analysis, sources, profile=profile, now=NOW))
    result = assert_conformant(data, allowed_warnings=RESULT_OBJECT_WARNINGS)
    assert result.iod == "Comprehensive3DSR"
    document = hd.sr.srread(io.BytesIO(data))
    groups = hd.sr.MeasurementReport.from_sequence(document.content).get_image_measurement_groups()
    assert [str(group.tracking_identifier) for group in groups] == [
        finding.label for finding in analysis.findings
    ]


def test_builder_names_the_bad_argument(chest, profile):
    image, _, lesion, analysis = chest
    bad_probability = dataclasses.replace(
        analysis, findings=(dataclasses.replace(analysis.findings[0], probability=1.5),)
    )
    with pytest.raises(ValueError, match="probability"):
        build_measurement_report(bad_probability, [image], profile=profile)
    not_ucum = dataclasses.replace(
        analysis,
        findings=(
            dataclasses.replace(
                analysis.findings[0],
                measurements=(
                    Measurement(synthetic.DIAMETER, 3.0, CodedConcept("mm", "99X", "mm")),
                ),
            ),
        ),
    )
    with pytest.raises(ValueError, match="UCUM"):
        build_measurement_report(not_ucum, [image], profile=profile)
    other_study, _ = synthetic.chest_radiograph(lesion=lesion, study_key="other")
    with pytest.raises(ValueError, match="sources"):
        build_measurement_report(analysis, [image, other_study], profile=profile)
    with pytest.raises(ValueError, match=r"analysis\.analysed_images"):
        build_measurement_report(analysis, [other_study], profile=profile)
    with pytest.raises(ValueError, match="generation"):
        build_measurement_report(analysis, [image], profile=profile, generation=0)
    with pytest.raises(TypeError, match="profile"):
        build_measurement_report(analysis, [image], profile={"carriers": ["sr"]})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reason"):
        build_measurement_report(
            dataclasses.replace(synthetic.not_analysable(image), reason=""),
            [image],
            profile=profile,
        )


def _text_values(dataset) -> list[tuple[str, str]]:
    """(concept name code value, text) of every TEXT item in the content tree."""
    found = []
    for item in dataset.get("ContentSequence", []):
        if item.ValueType == "TEXT":
            found.append((item.ConceptNameCodeSequence[0].CodeValue, item.TextValue))
        found.extend(_text_values(item))
    return found


def test_a_non_clinical_result_says_so_in_the_sr_and_its_algorithm_identification(chest, profile):
    image, _, _, analysis = chest
    assert analysis.model.clinical_use is False
    sr = round_trip(build_measurement_report(analysis, [image], profile=profile, now=NOW))
    texts = _text_values(sr)
    (notice,) = [text for code, text in texts if code == result_codes.CLINICAL_USE_NOTICE.value]
    assert notice.startswith("NOT FOR CLINICAL USE: cxr-densenet121 1.2.0")
    algorithm_parameters = "111002"  # DCM "Algorithm Parameters"
    parameters = [text for code, text in texts if code == algorithm_parameters]
    assert parameters and "NOT FOR CLINICAL USE" in parameters
    assert_conformant(encode_dataset(sr), allowed_warnings=RESULT_OBJECT_WARNINGS)
    clinical = dataclasses.replace(
        analysis, model=dataclasses.replace(analysis.model, clinical_use=True)
    )
    sr = round_trip(build_measurement_report(clinical, [image], profile=profile, now=NOW))
    assert all("NOT FOR CLINICAL USE" not in text for _, text in _text_values(sr))
