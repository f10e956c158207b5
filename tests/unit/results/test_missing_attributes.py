"""Optional attributes absent from the source images: each carrier stands on its own.

For every attribute a real image may lack, the SR is still built and conformant and says which
carriers will not be produced and why; every other carrier is still built and conformant.
"""

from __future__ import annotations

import pytest
from pydicom import Dataset

from integrations.dicom import result_codes
from integrations.dicom.result_objects import ResultKind, build_result_objects
from integrations.settings import ResultsSettings
from tests.dciodvfy import PARAMETRIC_MAP_WARNINGS, assert_conformant
from tests.unit.results import synthetic
from tests.unit.results.conftest import ALL_CARRIERS

NOW = synthetic.FIXED_NOW
PROFILE = ResultsSettings(carriers=ALL_CARRIERS)
GSPS, SC, SEG, PM = (
    ResultKind.GSPS,
    ResultKind.SECONDARY_CAPTURE,
    ResultKind.SEGMENTATION,
    ResultKind.PARAMETRIC_MAP,
)


def not_produced_statements(sr: Dataset) -> list[str]:
    """The SR's "Result object not produced" texts, anywhere in its content tree."""
    found = []
    for item in sr.get("ContentSequence", []):
        name = item.ConceptNameCodeSequence[0]
        if (name.CodeValue, name.CodingSchemeDesignator) == (
            result_codes.CARRIER_NOT_PRODUCED.value,
            result_codes.CARRIER_NOT_PRODUCED.scheme_designator,
        ):
            found.append(str(item.TextValue))
        found.extend(not_produced_statements(item))
    return found


def chest_case():
    lesion = synthetic.Lesion((205.0, 78.0), (16.0, 12.0))
    image, _ = synthetic.chest_radiograph(lesion=lesion)
    return [image], synthetic.chest_analysis(image, lesion)


def head_ct_case():
    lesion = synthetic.Lesion((40.0, 70.0), (9.0, 7.0))
    images, _ = synthetic.ct_series(lesion=lesion)
    return images, synthetic.head_ct_analysis(images, lesion, diameter_mm=21.0)


# What dciodvfy rightly says about a source that lacks these: Laterality is then unknown
# (empty, not absent), and a DICOMDIR could not be built without Patient ID and Study Date.
UNKNOWN_LATERALITY = r"only permitted to be empty when actually unknown.*<Laterality>"
NO_DICOMDIR_KEYS = r"needed to build DICOMDIR - (Patient ID|Study Date)"

# (case, attributes removed, carriers that cannot be built and a word of the reason).
# A chest radiograph never has a Parametric Map (no Frame of Reference).
CASES = [
    ("dx", ("PatientOrientation",), {SC: "Patient Orientation", SEG: "Patient Orientation"}),
    ("dx", ("ImageLaterality",), {}),
    ("dx", ("PixelSpacing", "ImagerPixelSpacing"), {}),
    ("dx", ("WindowCenter", "WindowWidth"), {}),
    ("dx", ("BodyPartExamined",), {}),
    ("dx", ("RescaleSlope",), {GSPS: "Rescale"}),
    ("dx", ("PatientID", "StudyDate", "AccessionNumber"), {}),
    ("ct", ("FrameOfReferenceUID",), {SEG: "Frame of Reference", PM: "Frame of Reference"}),
    ("ct", ("PixelSpacing",), {SEG: "Pixel Spacing", PM: "Pixel Spacing"}),
    ("ct", ("ImagePositionPatient",), {PM: "Image Position"}),
    (
        "ct",
        ("ImageOrientationPatient",),
        {SC: "Orientation", SEG: "Image Orientation", PM: "Image Orientation"},
    ),
    ("ct", ("SliceThickness",), {SEG: "Slice Thickness", PM: "Slice Thickness"}),
    ("ct", ("WindowCenter", "WindowWidth"), {}),
]


@pytest.mark.parametrize(
    ("case", "removed", "skipped"), CASES, ids=["-".join((c, *r)) for c, r, _ in CASES]
)
def test_a_missing_optional_attribute_costs_only_the_carriers_that_need_it(case, removed, skipped):
    sources, analysis = chest_case() if case == "dx" else head_ct_case()
    allowed = PARAMETRIC_MAP_WARNINGS
    if "BodyPartExamined" in removed:
        allowed = (*allowed, UNKNOWN_LATERALITY)
    if "PatientID" in removed:
        allowed = (*allowed, NO_DICOMDIR_KEYS)
    for source in sources:
        for keyword in removed:
            if keyword in source:
                delattr(source, keyword)
    expected_skips = dict(skipped)
    if case == "dx":
        expected_skips.setdefault(PM, "Frame of Reference")

    report = build_result_objects(analysis, sources, profile=PROFILE, now=NOW, part="report")
    overlays = build_result_objects(analysis, sources, profile=PROFILE, now=NOW, part="overlays")

    sr = report.sr
    assert_conformant(sr.to_bytes(), allowed_warnings=allowed)
    statements = not_produced_statements(sr.dataset)
    assert len(statements) == len(expected_skips)
    for kind, word in expected_skips.items():
        assert any(f"({kind.value}) not produced" in s and word in s for s in statements), (
            kind,
            statements,
        )
    # The overlays skip exactly what the SR announced, for the same reasons.
    assert {(item.kind, item.reason) for item in overlays.skipped} == {
        (item.kind, item.reason) for item in report_obstacles(analysis, sources)
    }
    built = {item.kind for item in overlays}
    assert built == {GSPS, SC, SEG, PM} - set(expected_skips)
    for item in overlays:
        assert_conformant(item.to_bytes(), allowed_warnings=allowed)


def report_obstacles(analysis, sources):
    from integrations.dicom.carrier_checks import carrier_obstacles

    return carrier_obstacles(analysis, sources, PROFILE)


def test_a_carrier_whose_builder_fails_anyway_is_skipped_with_the_error(monkeypatch):
    """An obstacle no header check foresaw still costs only its own carrier."""
    import integrations.dicom.result_objects as result_objects

    sources, analysis = head_ct_case()

    def broken(*args, **kwargs):
        raise RuntimeError("highdicom refused the frames")

    monkeypatch.setattr(result_objects, "build_segmentations", broken)
    overlays = build_result_objects(analysis, sources, profile=PROFILE, now=NOW, part="overlays")
    assert {item.kind for item in overlays} == {GSPS, SC, PM}
    assert [(item.kind, item.reason) for item in overlays.skipped] == [
        (SEG, "could not be built: highdicom refused the frames")
    ]
