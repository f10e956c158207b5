"""Phantom anatomy codes route like the BodyPartExamined they stand beside (pure)."""

from __future__ import annotations

import pytest

from integrations.dicom.body_part import region_body_part, resolve_body_part
from models.phantoms.dicom import ANATOMIC_REGIONS, anatomic_region_sequence
from models.phantoms.msk import BODY_PARTS
from tests.dicom_samples import make_instance


@pytest.mark.parametrize("body_part", sorted(ANATOMIC_REGIONS))
def test_each_anatomic_region_code_reads_back_as_its_body_part_by_code(body_part):
    item = anatomic_region_sequence(body_part)[0]
    region = (item.CodingSchemeDesignator, item.CodeValue, item.CodeMeaning)
    found = region_body_part([region])
    assert found == (body_part, region)


def test_every_radiograph_body_part_the_generators_use_has_a_code():
    assert {"CHEST", *BODY_PARTS} <= set(ANATOMIC_REGIONS)


def test_a_dx_sample_routes_by_its_anatomic_region_to_its_body_part():
    ds = make_instance("anatomy-route", body_part="WRIST")
    item = ds.AnatomicRegionSequence[0]
    evidence = resolve_body_part(
        body_part_examined=ds.BodyPartExamined,
        anatomic_regions=[(item.CodingSchemeDesignator, item.CodeValue, item.CodeMeaning)],
    )
    assert (evidence.body_part, evidence.source) == ("WRIST", "AnatomicRegionSequence")
    assert "Laterality" not in ds and ds.ImageLaterality == "U"
