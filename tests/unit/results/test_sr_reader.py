"""Reading a pacsflow SR back, and refusing reports that are not pacsflow's."""

from __future__ import annotations

import highdicom as hd
import pytest
from pydicom.sr.codedict import codes

from integrations.dicom.result_common import decode_dataset, encode_dataset
from integrations.dicom.sr import build_measurement_report
from integrations.dicom.sr_reader import is_pacsflow_report, read_measurement_report
from integrations.errors import DatasetError
from models.interval_change import compare_with_prior
from tests.unit.results import synthetic

NOW = synthetic.FIXED_NOW


def test_a_prior_sr_becomes_the_prior_side_of_a_comparison(profile):
    lesion = synthetic.Lesion((40.0, 70.0), (9.0, 7.0))
    earlier, _ = synthetic.ct_series(
        lesion=lesion, study_key="ct-0", study_date="20240601", accession_number="ACC100"
    )
    earlier_sr = build_measurement_report(
        synthetic.head_ct_analysis(earlier, lesion, volume_ml=10.0, diameter_mm=20.0),
        earlier,
        profile=profile,
        now=NOW,
    )
    report = read_measurement_report(decode_dataset(encode_dataset(earlier_sr)))
    prior = report.to_prior_study()
    assert prior.study_instance_uid == earlier[0].StudyInstanceUID
    assert prior.study_date.isoformat() == "2024-06-01"
    assert prior.accession_number == "ACC100"
    assert report.model_version == "0.9.1"
    current_images, _ = synthetic.ct_series(lesion=lesion)
    current = synthetic.head_ct_analysis(current_images, lesion, volume_ml=15.0, diameter_mm=22.0)
    changes = {c.quantity.meaning: c for c in compare_with_prior(current, prior).changes}
    assert changes["Volume"].absolute_change == pytest.approx(5.0)
    assert changes["Volume"].percent_change == pytest.approx(50.0)
    assert changes["Diameter"].absolute_change == pytest.approx(2.0)


def test_reports_that_are_not_pacsflows_are_refused(chest):
    image, _, _, _ = chest
    generic = hd.sr.Comprehensive3DSR(
        evidence=[image],
        content=hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(
                observer_person_context=hd.sr.ObserverContext(
                    observer_type=codes.DCM.Person,
                    observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                        name="Reader^Rita"
                    ),
                )
            ),
            procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
            imaging_measurements=[
                hd.sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=hd.sr.TrackingIdentifier(identifier="x", uid=hd.UID())
                )
            ],
        ),
        series_instance_uid=hd.UID(),
        series_number=1,
        sop_instance_uid=hd.UID(),
        instance_number=1,
    )
    assert not is_pacsflow_report(generic)
    with pytest.raises(DatasetError, match="not a pacsflow"):
        read_measurement_report(generic)
    assert not is_pacsflow_report(image)
    with pytest.raises(TypeError, match="dataset"):
        read_measurement_report(b"DICM")  # type: ignore[arg-type]


def test_a_pacsflow_report_is_recognised(chest, profile):
    image, _, _, analysis = chest
    sr = build_measurement_report(analysis, [image], profile=profile, now=NOW)
    assert is_pacsflow_report(decode_dataset(encode_dataset(sr)))
    report = read_measurement_report(sr)
    assert report.patient_name == "Müller^Jürgen"
    assert report.content_datetime == NOW
    assert report.finding("effusion").present is False
    with pytest.raises(KeyError):
        report.finding("fracture")
