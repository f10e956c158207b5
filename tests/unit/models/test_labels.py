"""Every label name an analyzer reports has exactly one coded concept, in output order."""

from __future__ import annotations

from models.codes import CHEST_LABEL_CODES, HEMORRHAGE_LABEL_CODES, SCT
from models.convert_xrv import XRV_PATHOLOGIES, pacsflow_label
from models.labels import (
    ANY_HEMORRHAGE,
    CHEST_CORE_LABELS,
    CHEST_LABELS,
    HEMORRHAGE_SUBTYPES,
    MIXED_HEMORRHAGE,
    TENSION_PNEUMOTHORAX,
)


def test_chest_codes_follow_the_label_table() -> None:
    assert tuple(CHEST_LABEL_CODES) == CHEST_LABELS
    assert CHEST_LABELS[-1] == TENSION_PNEUMOTHORAX and len(CHEST_CORE_LABELS) == 18


def test_hemorrhage_codes_follow_the_label_table() -> None:
    assert tuple(HEMORRHAGE_LABEL_CODES) == (ANY_HEMORRHAGE, *HEMORRHAGE_SUBTYPES, MIXED_HEMORRHAGE)
    assert HEMORRHAGE_LABEL_CODES[ANY_HEMORRHAGE].scheme == SCT


def test_torchxrayvision_names_map_back_to_the_core_labels() -> None:
    assert "Pleural_Thickening" in XRV_PATHOLOGIES
    assert tuple(pacsflow_label(name) for name in XRV_PATHOLOGIES) == CHEST_CORE_LABELS
