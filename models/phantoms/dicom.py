"""Build real DICOM datasets for phantom images (pure: datasets in memory, nothing written).

Every generated input image is a complete IOD for its SOP class, as a modality sends it, and
passes dicom3tools ``dciodvfy`` without errors (``tests/integration/test_generated_conformance``).
This module holds the modules every generator shares, one copy each:

* :func:`base_dataset`: Patient, General Study, General Series, General Equipment, General
  Image and SOP Common, with file meta;
* :func:`radiograph_modules`: DX (For Presentation) Series, Anatomy Imaged, Image, Detector,
  Positioning and Acquisition Context, or the CR Series and Image modules;
* :func:`ct_modules` and :func:`mr_modules`: Frame of Reference, Patient Position and the CT
  or MR Image module's Type 1 and 2 attributes;
* :func:`anatomic_region_sequence`: the SNOMED CT code (CID 4031) of a BodyPartExamined term.

Radiographs carry Imager Pixel Spacing, View Position and a VOI window or VOI LUT; CT slices
carry Rescale Slope/Intercept to Hounsfield units, Image Position/Orientation (Patient) and a
Frame of Reference; MR comes as classic single-frame slices or as one Enhanced MR multi-frame
object with per-frame functional groups. Any of them can be encoded with RLE Lossless, JPEG-LS
Lossless or JPEG 2000 Lossless so that analyzers are exercised through the decoders a PACS will
send them.
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
from pydicom.valuerep import format_number_as_ds

from integrations.dicom.result_common import PAIRED_BODY_PARTS
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

# BodyPartExamined term → its SNOMED CT concept in CID 4031 "Common Anatomic Regions"
# (integrations.dicom.body_part reads every one of them back as the same term).
ANATOMIC_REGIONS: dict[str, tuple[str, str]] = {
    "CHEST": ("816094009", "Chest"),
    "HEAD": ("69536005", "Head"),
    "BRAIN": ("12738006", "Brain"),
    "AORTA": ("15825003", "Aorta"),
    "BREAST": ("76752008", "Breast"),
    "CSPINE": ("122494005", "Cervical spine"),
    "TSPINE": ("122495006", "Thoracic spine"),
    "LSPINE": ("122496007", "Lumbar spine"),
    "HUMERUS": ("85050009", "Humerus"),
    "FOREARM": ("14975008", "Forearm"),
    "WRIST": ("74670003", "Wrist joint"),
    "HAND": ("85562004", "Hand"),
    "FEMUR": ("71341001", "Femur"),
    "LEG": ("30021000", "Lower leg"),
    "ANKLE": ("70258002", "Ankle joint"),
}
EQUIPMENT = {
    "Manufacturer": "pacsflow phantom",
    "ManufacturerModelName": "generated",
    "DeviceSerialNumber": "PHANTOM-1",
    "SoftwareVersions": "pacsflow-phantom 1",
}


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
    for keyword, value in EQUIPMENT.items():
        setattr(ds, keyword, value)
    ds.InstitutionName = "pacsflow demo hospital"
    ds.ReferringPhysicianName = study.referring_physician_name
    ds.StudyDescription = study.study_description
    ds.SeriesDescription = series_description
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


def anatomic_region_sequence(body_part: str) -> DicomSequence:
    """Anatomic Region Sequence for a BodyPartExamined term (empty when it has no code)."""
    coded = ANATOMIC_REGIONS.get(body_part.upper())
    return DicomSequence([code_item(coded[0], "SCT", coded[1])] if coded else [])


def set_laterality(ds: Dataset, body_part: str, laterality: str = "") -> None:
    """General Series Laterality (Type 2C): a value for a paired body part, empty (unknown)
    when there is no body part, absent for an unpaired one and wherever the IOD has Image
    Laterality instead (DX, MG)."""
    if "ImageLaterality" in ds or (body_part and body_part.upper() not in PAIRED_BODY_PARTS):
        ds.pop("Laterality", None)
    else:
        ds.Laterality = laterality


def radiograph_modules(
    ds: Dataset,
    *,
    body_part: str,
    view_position: str,
    view_code: tuple[str, str] | None,
    image_laterality: str,
    photometric: str,
    positioner_type: str = "COLUMN",
    pixel_intensity_relationship: str = "LOG",
) -> None:
    """DX For Presentation (PS3.3 A.26) or CR (A.2) modules, from ``ds.Modality``.

    DX: DX Series, DX Anatomy Imaged (with the Anatomic Region Sequence), DX Image (Pixel
    Intensity Relationship, Rescale to US, Presentation LUT Shape, Lossy Image Compression),
    DX Detector, DX Positioning (View Code Sequence) and Acquisition Context. CR: CR Series and
    CR Image (whose IOD has no View Code Sequence). The VOI LUT module is the caller's.
    """
    if view_position:
        ds.ViewPosition = view_position
    if ds.Modality == "CR":
        ds.pop("ImageLaterality", None)
    else:
        ds.ImageLaterality = image_laterality
    set_laterality(ds, body_part, image_laterality)
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    if ds.Modality == "CR":
        return
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.AnatomicRegionSequence = anatomic_region_sequence(body_part)
    ds.PixelIntensityRelationship = pixel_intensity_relationship
    ds.PixelIntensityRelationshipSign = 1
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.DetectorType = "SCINTILLATOR"
    ds.PositionerType = positioner_type
    ds.AcquisitionContextSequence = DicomSequence([])
    if view_code is not None:
        view = code_item(view_code[0], "SCT", view_code[1])
        view.ViewModifierCodeSequence = DicomSequence([])
        ds.ViewCodeSequence = DicomSequence([view])


def ct_modules(
    ds: Dataset,
    *,
    frame_of_reference_uid: str,
    kvp: float,
    rescale_intercept: float,
    acquisition_number: int = 1,
    localizer: bool = False,
) -> None:
    """Frame of Reference, Patient Position and the CT Image module (PS3.3 A.3); Rescale
    Type HU except on a localizer (whose values are projections, not Hounsfield units)."""
    _cross_sectional(ds, frame_of_reference_uid)
    ds.KVP = kvp
    ds.AcquisitionNumber = acquisition_number
    ds.RescaleIntercept = rescale_intercept
    ds.RescaleSlope = 1
    if localizer:
        ds.pop("RescaleType", None)
    else:
        ds.RescaleType = "HU"


def mr_modules(ds: Dataset, *, frame_of_reference_uid: str, echo_train_length: int = 1) -> None:
    """Frame of Reference, Patient Position and the MR Image module's Type 2 (PS3.3 A.4)."""
    _cross_sectional(ds, frame_of_reference_uid)
    ds.EchoTrainLength = echo_train_length
    if "ScanOptions" not in ds:
        ds.ScanOptions = ""


def _cross_sectional(ds: Dataset, frame_of_reference_uid: str) -> None:
    ds.FrameOfReferenceUID = UID(frame_of_reference_uid)
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"


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


def encode(ds: Dataset, transfer_syntax: TransferSyntaxName = "explicit") -> Dataset:
    """Finish ``ds`` in place: decimal strings fitted to 16 characters (PS3.5 6.2), then a
    lossless transfer syntax (none for ``explicit``)."""
    fit_decimal_strings(ds)
    if transfer_syntax == "explicit":
        return ds
    ds.compress(COMPRESSED_SYNTAXES[transfer_syntax])
    return ds


def fit_decimal_strings(ds: Dataset) -> None:
    """Rewrite every DS value longer than 16 characters at the most precision that fits."""
    for element in ds.iterall():
        if element.VR != "DS" or element.value is None or element.value == "":
            continue
        values = element.value if element.VM > 1 else [element.value]
        if any(len(str(value)) > 16 for value in values):
            fitted = [format_number_as_ds(float(value)) for value in values]
            element.value = fitted if element.VM > 1 else fitted[0]


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
    # US, not OW: LUT Data's VR is ambiguous (US or OW) and a list of values only encodes as US
    item.add_new("LUTData", "US", [int(value) for value in table])
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
