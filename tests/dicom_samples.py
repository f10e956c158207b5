"""Small, valid DICOM instances for node tests (pure construction, file writing on request)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from integrations.dicom.uids import derived_uid

DIGITAL_XRAY_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


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
    sop_class_uid: str = DIGITAL_XRAY_FOR_PRESENTATION,
    size: int = 64,
) -> Dataset:
    """An instance whose UIDs derive from (study, series, number): the same call, the same UIDs."""
    ds = Dataset()
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = derived_uid("sample-instance", study, series, number)
    ds.StudyInstanceUID = derived_uid("sample-study", study)
    ds.SeriesInstanceUID = derived_uid("sample-series", study, series)
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.AccessionNumber = accession or f"ACC-{study}"[:16]
    ds.StudyDate = "20261127"
    ds.StudyTime = "120000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.Modality = modality
    ds.BodyPartExamined = body_part
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.Manufacturer = "pacsflow-tests"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(number)
    ds.PixelData = rng.integers(0, 4096, (size, size), dtype=np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


def write(ds: Dataset, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def study_files(folder: Path, study: str, count: int = 3, **kwargs: object) -> list[Path]:
    return [write(make_instance(study, number=i, **kwargs), folder) for i in range(1, count + 1)]  # type: ignore[arg-type]
