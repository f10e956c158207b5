"""Build real DICOM datasets for phantom images (pure: datasets in memory, nothing written).

Radiographs are DX (For Presentation) or CR with Imager Pixel Spacing, View Position and a VOI
window or VOI LUT; CT slices carry Rescale Slope/Intercept to Hounsfield units, Image
Position/Orientation (Patient) and a Frame of Reference; MR comes as classic single-frame
slices or as one Enhanced MR multi-frame object with per-frame functional groups. Any of them
can be encoded with RLE Lossless, JPEG-LS Lossless or JPEG 2000 Lossless so that analyzers are
exercised through the decoders a PACS will send them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from models.phantoms.base import StudyInfo

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_IMAGE_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"

COMPRESSED_SYNTAXES = {
    "rle": RLELossless,
    "jpeg-ls": JPEGLSLossless,
    "jpeg2000": JPEG2000Lossless,
}
TransferSyntaxName = Literal["explicit", "rle", "jpeg-ls", "jpeg2000"]


def base_dataset(
    study: StudyInfo,
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    series_instance_uid: str,
    modality: str,
    series_number: int,
    instance_number: int,
    series_description: str,
    body_part: str,
) -> Dataset:
    """Patient, study, series, equipment and SOP common modules, with file meta."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "PACSFLOW_PHANTOM"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = UID(sop_class_uid)
    ds.SOPInstanceUID = UID(sop_instance_uid)
    ds.StudyDate = study.study_date
    ds.SeriesDate = study.study_date
    ds.ContentDate = study.study_date
    ds.StudyTime = study.study_time
    ds.SeriesTime = study.study_time
    ds.ContentTime = study.study_time
    ds.AccessionNumber = study.accession_number
    ds.Modality = modality
    ds.Manufacturer = "pacsflow phantom"
    ds.InstitutionName = "pacsflow demo hospital"
    ds.ReferringPhysicianName = study.referring_physician_name
    ds.StudyDescription = study.study_description
    ds.SeriesDescription = series_description
    ds.ManufacturerModelName = "generated"
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.BodyPartExamined = body_part
    ds.StudyInstanceUID = UID(study.study_instance_uid)
    ds.SeriesInstanceUID = UID(series_instance_uid)
    ds.StudyID = study.study_id
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.BurnedInAnnotation = "NO"
    return ds


def set_pixels(
    ds: Dataset,
    pixels: np.ndarray,
    *,
    bits_stored: int,
    photometric: str = "MONOCHROME2",
) -> None:
    """Attach unsigned 16-bit pixel data ((rows, cols) or (frames, rows, cols))."""
    if pixels.dtype != np.uint16:
        raise TypeError("phantom pixel data must be uint16")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if pixels.ndim == 3:
        ds.NumberOfFrames = int(pixels.shape[0])
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


def encode(ds: Dataset, transfer_syntax: TransferSyntaxName) -> Dataset:
    """Compress ``ds`` in place with a lossless transfer syntax (no-op for ``explicit``)."""
    if transfer_syntax == "explicit":
        return ds
    ds.compress(COMPRESSED_SYNTAXES[transfer_syntax])
    return ds


def sequence_item(**elements: object) -> Dataset:
    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item


def voi_lut_sequence(bits: int, table: np.ndarray, first_mapped: int = 0) -> DicomSequence:
    """A VOI LUT Sequence item mapping stored values from ``first_mapped`` through ``table``."""
    item = Dataset()
    item.LUTDescriptor = [int(table.size) % 65536, first_mapped, bits]
    item.LUTExplanation = "phantom display curve"
    item.LUTData = [int(value) for value in table]
    return DicomSequence([item])


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    return sequence_item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def frame_functional_groups(
    positions: Sequence[tuple[float, float, float]],
) -> DicomSequence:
    """Per-frame functional groups carrying each frame's Image Position (Patient)."""
    items = []
    for index, position in enumerate(positions):
        group = Dataset()
        group.PlanePositionSequence = DicomSequence(
            [sequence_item(ImagePositionPatient=[float(v) for v in position])]
        )
        group.FrameContentSequence = DicomSequence(
            [sequence_item(InStackPositionNumber=index + 1, StackID="1")]
        )
        items.append(group)
    return DicomSequence(items)
