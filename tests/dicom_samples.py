"""Small, valid DICOM instances for node tests (pure construction, file writing on request)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import Dataset

from integrations.dicom.uids import derived_uid
from models.phantoms.base import StudyInfo
from models.phantoms.dicom import (
    CR_IMAGE_STORAGE,
    CT_IMAGE_STORAGE,
    DX_IMAGE_FOR_PRESENTATION,
    MR_IMAGE_STORAGE,
    base_dataset,
    ct_modules,
    encode,
    mr_modules,
    radiograph_modules,
    set_laterality,
    set_pixels,
)

DIGITAL_XRAY_FOR_PRESENTATION = DX_IMAGE_FOR_PRESENTATION
CT_IMAGE = CT_IMAGE_STORAGE
DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
SOP_CLASSES = {
    "DX": DX_IMAGE_FOR_PRESENTATION,
    "CR": CR_IMAGE_STORAGE,
    "CT": CT_IMAGE_STORAGE,
    "MR": MR_IMAGE_STORAGE,
    "MG": DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION,
}


def make_instance(
    study: str,
    series: str = "1",
    number: int = 1,
    *,
    modality: str = "DX",
    body_part: str = "CHEST",
    patient_id: str = "PF-TEST-1",
    patient_name: str = "Test^Patient",
    accession: str = "",
    sop_class_uid: str | None = None,
    size: int = 64,
) -> Dataset:
    """An instance whose UIDs derive from (study, series, number): the same call, the same UIDs.

    A complete image IOD for the modality (DX For Presentation, CR, CT, MR or Digital
    Mammography For Presentation, through :mod:`models.phantoms.dicom`); any other modality
    (the tests' stand-ins for SR or PR objects) keeps the DX modules under its own Modality.
    """
    sop_class_uid = sop_class_uid or SOP_CLASSES.get(modality, DX_IMAGE_FOR_PRESENTATION)
    info = StudyInfo(
        study_instance_uid=derived_uid("sample-study", study),
        patient_id=patient_id,
        patient_name=patient_name,
        patient_birth_date="19700101",
        patient_sex="F",
        accession_number=accession or f"ACC-{study}"[:16],
        study_date="20261127",
        study_time="120000",
        study_id="1",
        study_description="",
    )
    ds = base_dataset(
        info,
        sop_class_uid=sop_class_uid,
        sop_instance_uid=derived_uid("sample-instance", study, series, number),
        series_instance_uid=derived_uid("sample-series", study, series),
        modality=modality,
        series_number=1,
        instance_number=number,
        series_description="",
        body_part=body_part,
    )
    ds.Manufacturer = "pacsflow-tests"
    ds.PatientOrientation = ["L", "F"]
    if sop_class_uid == CT_IMAGE_STORAGE:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ct_modules(
            ds,
            frame_of_reference_uid=derived_uid("sample-frame", study, series),
            kvp=120,
            rescale_intercept=-1024,
        )
    elif sop_class_uid == MR_IMAGE_STORAGE:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        mr_modules(ds, frame_of_reference_uid=derived_uid("sample-frame", study, series))
        set_laterality(ds, body_part)
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = 500.0
        ds.EchoTime = 15.0
        ds.MagneticFieldStrength = 1.5
        ds.ImagingFrequency = 63.9
    else:
        _projection_modules(ds, body_part, mammography=sop_class_uid == SOP_CLASSES["MG"])
    if sop_class_uid in (CT_IMAGE_STORAGE, MR_IMAGE_STORAGE):
        del ds.PatientOrientation
        ds.ImagePositionPatient = [0.0, 0.0, 5.0 * number]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 5.0
    rng = np.random.default_rng(number)
    set_pixels(ds, rng.integers(0, 4096, (size, size), dtype=np.uint16), bits_stored=12)
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    return encode(ds)


def _projection_modules(ds: Dataset, body_part: str, *, mammography: bool) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    radiograph_modules(
        ds,
        body_part=body_part,
        view_position="" if mammography else "PA",  # mammography: the View Code only
        view_code=("399162004", "cranio-caudal")
        if mammography
        else ("272479007", "postero-anterior"),
        image_laterality="L" if mammography else "U",
        photometric="MONOCHROME2",
        positioner_type="MAMMOGRAPHIC" if mammography else "COLUMN",
    )
    ds.ImagerPixelSpacing = [0.2, 0.2]
    if mammography:
        ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
        ds.PartialView = "NO"
        ds.BreastImplantPresent = "NO"
        ds.OrganExposed = "BREAST"


def write(ds: Dataset, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def study_files(folder: Path, study: str, count: int = 3, **kwargs: object) -> list[Path]:
    return [write(make_instance(study, number=i, **kwargs), folder) for i in range(1, count + 1)]  # type: ignore[arg-type]
