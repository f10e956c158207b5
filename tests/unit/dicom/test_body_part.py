"""Body part from real headers: overrides, anatomic codes, BodyPartExamined, keywords."""

from __future__ import annotations

import io

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from integrations.dicom.body_part import BodyPartOverride, keyword_body_part, resolve_body_part
from integrations.dicom.header import read_header
from integrations.dicom.routing import Route, Rule, SeriesInfo, route_study
from tests.dicom_samples import make_instance

BRAIN_MRI = Rule("brain-mri", ("brain-mri-tumor",), modality=("MR",), body_part=("HEAD", "BRAIN"))
KNEE_RULE = Rule("knee", ("msk-fracture",), modality=("DX",), body_part=("KNEE",))


@pytest.mark.parametrize(
    ("text", "body_part", "word"),
    [
        ("MRT Schädel nativ", "HEAD", "schädel"),
        ("Kopf^Routine", "HEAD", "kopf"),
        ("IRM CÉRÉBRALE", "BRAIN", "cérébrale"),
        ("Crâne sans injection", "HEAD", "crâne"),
        ("RM cerebro con contraste", "BRAIN", "cerebro"),
        ("TC cráneo simple", "HEAD", "cráneo"),
        ("RM encefalo", "BRAIN", "encefalo"),
        ("MRI hersenen", "BRAIN", "hersenen"),
        ("Rx tórax PA", "CHEST", "tórax"),
        ("RX TORACE", "CHEST", "torace"),
        ("X thorax borst", "CHEST", "thorax"),
        ("CT Lunge", "CHEST", "lunge"),
        ("TDM poumons", "CHEST", "poumons"),
        ("TAC pulmón", "CHEST", "pulmón"),
        ("genou droit", "KNEE", "genou"),
        ("Kniegelenk li", "KNEE", "kniegelenk"),
        ("rodilla izq", "KNEE", "rodilla"),
        ("ginocchio dx", "KNEE", "ginocchio"),
        ("joelho", "KNEE", "joelho"),
        ("poignet face", "WRIST", "poignet"),
        ("Handgelenk 2 Ebenen", "WRIST", "handgelenk"),
        ("muñeca", "WRIST", "muñeca"),
        ("polso", "WRIST", "polso"),
        ("punho", "WRIST", "punho"),
        ("pols links", "WRIST", "pols"),
        ("Thoracic spine", "TSPINE", "thoracic spine"),  # the longer phrase wins over 'thorac'
        ("CT THORAX ABDOMEN", "CHEST", "thorax"),  # the first word in the text
        ("Hand rechts", "HAND", "hand"),
    ],
)
def test_keywords_in_seven_languages_with_accents_folded(text, body_part, word):
    assert keyword_body_part(text) == (body_part, word)


@pytest.mark.parametrize("text", ["T2 FLAIR AX", "ep2d_diff", "Survey", "", "impulse"])
def test_texts_without_a_body_part_say_nothing(text):
    assert keyword_body_part(text) is None


def test_evidence_order_override_codes_body_part_examined_then_keywords():
    everything = dict(
        body_part_examined="KNEE",
        anatomic_regions=(("SCT", "12738006", "Brain"),),
        series_description="Thorax",
        station_name="MR-NORD",
    )
    override = BodyPartOverride("HEAD", station_name="mr-nord")
    decided = resolve_body_part(**everything, overrides=(override,))
    assert decided.body_part == "HEAD" and decided.source == "site override"
    assert "Station Name 'MR-NORD'" in decided.describe()
    decided = resolve_body_part(**everything)
    assert decided.describe() == (
        "body part BRAIN from AnatomicRegionSequence code SCT:12738006 (Brain)"
    )
    decided = resolve_body_part(**{**everything, "anatomic_regions": ()})
    assert (decided.body_part, decided.source) == ("KNEE", "BodyPartExamined")
    decided = resolve_body_part(series_description="Thorax", study_description="Schädel")
    assert decided.describe() == "body part CHEST from SeriesDescription keyword 'thorax'"


def test_nonstandard_body_part_examined_and_old_snomed_codes_and_unknown_codes():
    assert resolve_body_part(body_part_examined="SCHAEDEL").body_part == "HEAD"
    assert resolve_body_part(anatomic_regions=(("SRT", "T-D1100", "Head"),)).body_part == "HEAD"
    unknown_code = resolve_body_part(anatomic_regions=(("SCT", "999999", "Knee joint"),))
    assert unknown_code.body_part == "KNEE"
    # An unusable BodyPartExamined ("OTHER") gives way to the descriptions.
    assert resolve_body_part(
        body_part_examined="OTHER", study_description="IRM cérébrale"
    ).describe() == ("body part BRAIN from StudyDescription keyword 'cérébrale'")


def test_override_by_calling_ae_title_and_protocol_needs_all_its_conditions():
    override = BodyPartOverride("KNEE", calling_ae_title="ORTHO_CR", protocol=r"(?i)^ortho")
    assert resolve_body_part(calling_ae_title="ortho_cr", protocol_name="ORTHO 2").body_part == ""
    decided = resolve_body_part(
        calling_ae_title="ortho_cr", protocol_name="ortho 2", overrides=(override,)
    )
    assert decided.body_part == "KNEE"
    assert "calling AE title 'ortho_cr' and protocol /(?i)^ortho/" in decided.detail
    missed = resolve_body_part(
        calling_ae_title="OTHER", protocol_name="ortho", overrides=(override,)
    )
    assert missed.body_part == ""


def test_a_german_mr_without_body_part_is_routed_with_its_evidence():
    series = SeriesInfo(
        "1.2.3.4",
        modality="MR",
        series_description="t2_tirm_tra_dark-fluid",
        study_description="MRT Schädel nativ",
    )
    route = route_study([series], (BRAIN_MRI, KNEE_RULE))
    assert route.analyzers == {"brain-mri-tumor": ("1.2.3.4",)}
    assert route.body_parts == {"1.2.3.4": "body part HEAD from StudyDescription keyword 'schädel'"}
    assert Route.from_json(route.to_json()) == route
    bare = SeriesInfo("1.2.3.5", modality="MR", series_description="t2_tse_tra")
    unrouted = route_study([bare], (BRAIN_MRI,))
    assert not unrouted.is_routed
    assert "body part unknown" in (unrouted.unrouted_reason or "")
    overridden = route_study(
        [SeriesInfo("1.2.3.5", modality="MR", station_name="NEURO-MR")],
        (BRAIN_MRI,),
        (BodyPartOverride("BRAIN", station_name="neuro-mr"),),
    )
    assert overridden.is_routed
    assert "site override (Station Name 'NEURO-MR')" in overridden.body_parts["1.2.3.5"]


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _bytes(ds: Dataset, syntax: str) -> bytes:
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
)
def test_header_reads_station_and_anatomic_regions_top_level_and_enhanced(syntax):
    ds = make_instance("anatomy", modality="MR", body_part="")
    ds.StationName = "MR-NORD"
    ds.AnatomicRegionSequence = Sequence([_code("12738006", "SCT", "Brain")])
    header = read_header(_bytes(ds, syntax))
    assert header.station_name == "MR-NORD"
    assert header.anatomic_regions == (("SCT", "12738006", "Brain"),)
    assert header.body_part_examined == ""

    enhanced = make_instance("anatomy-enhanced", modality="MR", body_part="")
    anatomy = Dataset()
    anatomy.AnatomicRegionSequence = Sequence([_code("T-D1100", "SRT", "Head")])
    anatomy.FrameLaterality = "U"
    shared = Dataset()
    shared.FrameAnatomySequence = Sequence([anatomy])
    enhanced.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = Dataset()
    per_frame.FrameAnatomySequence = Sequence([anatomy])
    enhanced.PerFrameFunctionalGroupsSequence = Sequence([per_frame])
    header = read_header(_bytes(enhanced, syntax))
    assert header.anatomic_regions == (("SRT", "T-D1100", "Head"),)
