"""Every generated input image is a conformant IOD: dciodvfy finds no error (I/O: dciodvfy).

One instance of every series of every generator (phantom kind, modality, view, encoding,
vendor profile, out-of-domain mutation, test sample; :mod:`tests.generated_inputs`) and of
every demo study. A strict PACS rejects what a lenient one accepts, so errors fail; warnings
are allowed and listed (``-rP`` or the ``dciodvfy_warnings`` property in the JUnit report).
"""

from __future__ import annotations

import io

import pytest
from pydicom import Dataset

from deployments.demo_studies import demo_studies
from tests.dciodvfy import verify
from tests.generated_inputs import GENERATORS, one_per_series

# DX For Presentation needs a VOI window or LUT (PS3.3 C.8.11.3). These variants leave it out
# on purpose, as some modalities wrongly do: the demo chest model was trained on them and the
# domain gate was calibrated on the out-of-domain sets shown in the viewer's "auto" window.
# They are built in memory for training and calibration and are never sent to a PACS.
MISSING_VOI = frozenset(
    {
        "Error - Missing attribute Type 1C Conditional Element=<VOILUTSequence> Module=<DXImage>",
        "Error - Missing attribute Type 1C Conditional Element=<WindowCenter> Module=<DXImage>",
        "Error - Missing attribute Type 1C Conditional Element=<VOILUTSequence>"
        " Module=<VOILUTMacro>",
        "Error - Missing attribute Type 1C Conditional Element=<WindowCenter> Module=<VOILUTMacro>",
    }
)
# The vendor MR profiles reproduce studies whose headers name no anatomy (no BodyPartExamined,
# no code), so that routing is tested on their descriptions (tests/integration/
# test_body_part_routing.py); as Enhanced MR they therefore lack the mandatory Frame Anatomy.
MISSING_FRAME_ANATOMY = frozenset(
    {
        "Error - Missing attribute Type 1 Required Element=<FrameAnatomySequence>"
        " Module=<FrameAnatomyMacro>"
    }
)
KNOWN_ERRORS: dict[str, frozenset[str]] = {
    "vendor-mr-philips-enhanced": MISSING_FRAME_ANATOMY,
    "vendor-mr-siemens-enhanced": MISSING_FRAME_ANATOMY,
    "vendor-mr-ge-enhanced": MISSING_FRAME_ANATOMY,
    "chest-dx-no-voi": MISSING_VOI,
    "ood-noise-chest": MISSING_VOI,
    "ood-dark-fields-chest": MISSING_VOI,
    "ood-other-body-part-chest": MISSING_VOI,
}


def _demo(index: int) -> list[Dataset]:
    return demo_studies()[index].phantom.datasets


DEMO_COUNT = 8
CASES = {**GENERATORS, **{f"demo-{i + 1}": (lambda i=i: _demo(i)) for i in range(DEMO_COUNT)}}


def _encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_every_demo_study_is_covered():
    assert len(demo_studies()) == DEMO_COUNT


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_images_pass_dciodvfy_without_errors(name, record_property):
    instances = one_per_series(CASES[name]())
    assert instances
    report = []
    for ds in instances:
        result = verify(_encoded(ds))
        where = f"{name} / {ds.get('SeriesDescription', '')} ({result.iod})"
        assert set(result.errors) == KNOWN_ERRORS.get(name, frozenset()), (
            f"dciodvfy errors in {where}:\n" + "\n".join(result.errors)
        )
        report.extend(f"{where}: {warning}" for warning in result.warnings)
    record_property("dciodvfy_warnings", "\n".join(report))
    print("\n".join(report) or f"{name}: no warnings")
