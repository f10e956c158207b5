"""Phantom studies: real, valid, deterministic DICOM with ground truth that matches the image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.filewriter import dcmwrite

from integrations.dicom.uids import is_valid_uid
from models.labels import CHEST_LABELS
from models.phantoms.chest import chest_xray_study
from models.preprocess import decode_frames, display_values


def test_same_seed_same_study_and_uids() -> None:
    first = chest_xray_study(11, ("Pneumothorax",), size=128)
    second = chest_xray_study(11, ("Pneumothorax",), size=128)
    assert first.datasets[0].SOPInstanceUID == second.datasets[0].SOPInstanceUID
    assert first.datasets[0].PixelData == second.datasets[0].PixelData
    other = chest_xray_study(12, ("Pneumothorax",), size=128)
    assert other.study_instance_uid != first.study_instance_uid


def test_uids_are_valid_and_identity_can_be_given() -> None:
    study = chest_xray_study(
        5, (), views=("PA", "LATERAL"), size=64, patient_id="P123", accession_number="ACC9"
    )
    for dataset in study.datasets:
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            assert is_valid_uid(str(dataset.get(keyword))), keyword
        assert dataset.PatientID == "P123" and dataset.AccessionNumber == "ACC9"
    assert len({d.SOPInstanceUID for d in study.datasets}) == 2
    assert len({d.StudyInstanceUID for d in study.datasets}) == 1


@pytest.mark.parametrize("syntax", ["explicit", "rle", "jpeg2000"])
def test_datasets_round_trip_as_dicom_files(syntax: str) -> None:
    study = chest_xray_study(6, ("Nodule",), size=96, transfer_syntax=syntax)  # type: ignore[arg-type]
    buffer = io.BytesIO()
    dcmwrite(buffer, study.datasets[0], enforce_file_format=True)
    buffer.seek(0)
    read = dcmread(buffer)
    assert read.Modality == "DX" and read.ViewPosition == "PA"
    np.testing.assert_array_equal(read.pixel_array, study.datasets[0].pixel_array)


def test_implied_labels_and_masks_follow_the_drawing() -> None:
    study = chest_xray_study(7, ("Tension Pneumothorax", "Mass"), size=256)
    assert {"Tension Pneumothorax", "Pneumothorax", "Mass", "Lung Lesion"} <= study.labels
    key = str(study.datasets[0].SOPInstanceUID)
    pneumothorax = study.mask("Pneumothorax", key)
    assert pneumothorax is not None and pneumothorax.shape == (256, 256)
    shown = display_values(decode_frames(study.datasets[0])[0])
    normal = display_values(decode_frames(chest_xray_study(7, (), size=256).datasets[0])[0])
    # a pneumothorax is air: darker than the same lung without it
    assert shown[pneumothorax].mean() < normal[pneumothorax].mean() - 0.02
    assert study.mask("Lung Lesion", key).sum() == study.mask("Mass", key).sum()


@pytest.mark.parametrize("finding", CHEST_LABELS)
def test_every_chest_finding_changes_the_image_where_its_mask_is(finding: str) -> None:
    study = chest_xray_study(21, (finding,), size=192)
    normal = chest_xray_study(21, (), size=192)
    key = str(study.datasets[0].SOPInstanceUID)
    mask = study.mask(finding, key)
    assert mask is not None and mask.any()
    shown = display_values(decode_frames(study.datasets[0])[0])
    baseline = display_values(decode_frames(normal.datasets[0])[0])
    assert np.abs(shown - baseline)[mask].mean() > 0.01


def test_unknown_finding_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown chest findings"):
        chest_xray_study(1, ("Broken heart",))
