"""Dispatch priority: order priority first, then the study-type rules (pure)."""

from __future__ import annotations

import io

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from integrations.dicom.header import read_header
from integrations.dicom.priority import (
    DEFAULT_RULES,
    OrderPriority,
    PriorityRule,
    decide_priority,
    order_priority_of,
)
from integrations.dicom.routing import Rule, SeriesInfo
from integrations.errors import ConfigError
from integrations.settings import default_worker_count, load_settings
from tests.dicom_samples import make_instance

HEAD_CT = SeriesInfo("1.1", modality="CT", body_part_examined="HEAD")
CTA_NECK = SeriesInfo("1.2", modality="CT", series_description="CTA Circle of Willis")
CHEST_XRAY = SeriesInfo("2.1", modality="DX", body_part_examined="CHEST")
KNEE_XRAY = SeriesInfo("3.1", modality="CR", body_part_examined="KNEE")
BRAIN_MRI = SeriesInfo("4.1", modality="MR", body_part_examined="BRAIN")


def value(*series: SeriesInfo, **kwargs) -> int:
    return decide_priority(series, DEFAULT_RULES, **kwargs).value


def test_default_rules_put_head_ct_before_chest_before_extremity_radiographs():
    head, cta, chest = value(HEAD_CT), value(CTA_NECK), value(CHEST_XRAY)
    other, knee = value(BRAIN_MRI), value(KNEE_XRAY)
    assert head == cta > chest > other > knee
    assert decide_priority([HEAD_CT]).rule == "head-ct"
    assert decide_priority([CTA_NECK]).rule == "cta-stroke-ct"
    assert decide_priority([KNEE_XRAY]).rule == "extremity-radiograph"


def test_a_study_takes_its_highest_ranked_series():
    decided = decide_priority([KNEE_XRAY, HEAD_CT, CHEST_XRAY])
    assert (decided.rule, decided.rank) == ("head-ct", 90)


def test_order_priority_outranks_every_study_type_rule():
    stat_knee = value(KNEE_XRAY, requested_priorities=["STAT"])
    routine_head = value(HEAD_CT, requested_priorities=["ROUTINE"])
    unknown_head = value(HEAD_CT)
    assert stat_knee > routine_head == unknown_head
    assert value(KNEE_XRAY, requested_priorities=["HIGH"]) > value(HEAD_CT)
    assert value(HEAD_CT, requested_priorities=["LOW"]) < value(KNEE_XRAY)
    # several images, several orders: the most urgent one counts
    assert (
        decide_priority([CHEST_XRAY], requested_priorities=["ROUTINE", "", "STAT"]).order
        is OrderPriority.STAT
    )


@pytest.mark.parametrize(
    ("code", "level"),
    [("STAT", 3), ("s", 3), ("HIGH", 2), ("A", 2), ("ROUTINE", 1), ("MEDIUM", 1), ("LOW", 0)],
)
def test_dicom_and_hl7_codes_fold_to_one_scale(code, level):
    assert order_priority_of(code) == level


def test_unknown_order_codes_are_ignored_not_guessed():
    assert order_priority_of("") is None
    assert order_priority_of("WHENEVER") is None
    assert decide_priority([CHEST_XRAY], requested_priorities=["WHENEVER"]).order_source == "none"


def test_an_emergency_patient_counts_as_asap_only_when_the_images_say_nothing():
    emergency = decide_priority([KNEE_XRAY], patient_class="E")
    assert (emergency.order, emergency.order_source) == (OrderPriority.ASAP, "adt")
    ordered = decide_priority([KNEE_XRAY], requested_priorities=["ROUTINE"], patient_class="E")
    assert (ordered.order, ordered.order_source) == (OrderPriority.ROUTINE, "dicom")
    assert decide_priority([KNEE_XRAY], patient_class="I").order is OrderPriority.ROUTINE


def test_what_decided_is_said_in_words():
    assert decide_priority([HEAD_CT]).decided_by == (
        "order priority unknown (routine); rule head-ct (rank 90)"
    )
    assert decide_priority([KNEE_XRAY], requested_priorities=["STAT"]).decided_by == (
        "order STAT from dicom; rule extremity-radiograph (rank 10)"
    )
    assert decide_priority([KNEE_XRAY], []).decided_by.endswith("no rule (rank 0)")


def test_site_rules_replace_the_defaults_first_match_per_series():
    settings = load_settings(
        None,
        search=False,
        worker={
            "priority_rules": [
                {"name": "mammo-screening", "rank": 5, "modality": ["MG"]},
                {"name": "knee-first", "rank": 95, "body_part": ["knee"]},
                {"name": "knee-late", "rank": 1, "body_part": ["KNEE"]},
            ]
        },
    )
    rules = settings.worker.to_priority_rules()
    decided = decide_priority([KNEE_XRAY, HEAD_CT], rules)
    assert (decided.rule, decided.rank) == ("knee-first", 95)
    assert decide_priority([HEAD_CT], rules).rank == 0


def test_priority_settings_are_checked():
    with pytest.raises(ConfigError, match="rank"):
        load_settings(None, search=False, worker={"priority_rules": [{"name": "x", "rank": 100}]})
    with pytest.raises(ConfigError, match="unique"):
        load_settings(
            None,
            search=False,
            worker={"priority_rules": [{"name": "x", "rank": 1}, {"name": "x", "rank": 2}]},
        )
    with pytest.raises(ConfigError, match="half of lease_seconds"):
        load_settings(None, search=False, worker={"lease_seconds": 10, "heartbeat_seconds": 6})
    with pytest.raises(ValueError, match="rank"):
        PriorityRule(Rule(name="x", analyzers=()), 120)


def test_worker_count_default_follows_the_machine_within_bounds():
    assert [default_worker_count(n) for n in (1, 2, 4, 8, 32)] == [2, 2, 2, 4, 8]
    assert load_settings(None, search=False).worker.count == default_worker_count()
    assert load_settings(None, search=False, worker={"count": 0}).worker.count == 0


def _encoded(dataset: Dataset, implicit: bool = False) -> bytes:
    if implicit:
        dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    return buffer.getvalue()


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("defined_length", [False, True])
def test_header_reads_requested_procedure_priority_from_the_request_attributes(
    implicit, defined_length
):
    dataset = make_instance("prio-1")
    request = Dataset()
    request.RequestedProcedureID = "RP1"
    request.StudyInstanceUID = dataset.StudyInstanceUID
    request.RequestedProcedurePriority = "stat"
    dataset.RequestAttributesSequence = Sequence([request])
    if defined_length:  # an implicit VR sequence of defined length is walked only when wanted
        dataset["RequestAttributesSequence"].is_undefined_length = False
        request.is_undefined_length_sequence_item = False
    header = read_header(_encoded(dataset, implicit))
    assert header.requested_procedure_priority == "STAT"
    assert header.study_instance_uid == dataset.StudyInstanceUID  # not the item's copy


def test_header_prefers_a_top_level_requested_procedure_priority():
    dataset = make_instance("prio-2")
    dataset.RequestedProcedurePriority = "HIGH"
    request = Dataset()
    request.RequestedProcedurePriority = "LOW"
    dataset.RequestAttributesSequence = Sequence([request])
    assert read_header(_encoded(dataset)).requested_procedure_priority == "HIGH"
    assert read_header(_encoded(make_instance("prio-3"))).requested_procedure_priority == ""
