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


def enhanced_mr_modules(
    ds: Dataset,
    *,
    body_part: str | None,
    acquisition_datetime: str,
    dimension_organization_uid: str,
) -> None:
    """The Enhanced MR Image IOD's modules and functional groups (PS3.3 A.36.2), in place.

    Completes what the generator put in ``ds`` (Image Type, per-frame positions and stack
    numbers, shared pixel measures, orientation, VOI, and any timing, echo and inversion
    items) without changing a value it set: Enhanced MR Image and MR Pulse Sequence modules,
    Multi-frame Dimension (stack, in-stack position), Acquisition Context and, in the shared
    functional groups, MR Image Frame Type, Pixel Value Transformation (identity), Frame
    Anatomy (only with ``body_part``), MR Timing, Echo, Modifier, Imaging Modifier, Receive
    and Transmit Coil, FOV/Geometry and Averages. Safe to call again after edits.
    """
    _cross_sectional(ds, str(ds.FrameOfReferenceUID))
    image_type = [str(value) for value in ds.ImageType][:4]
    image_type += ["NONE"] * (4 - len(image_type))
    ds.ImageType = image_type
    original = image_type[0] in ("ORIGINAL", "MIXED")
    scanning = {str(value) for value in _values(ds.get("ScanningSequence"))}
    description = {
        "PixelPresentation": "MONOCHROME",
        "VolumetricProperties": "VOLUME",
        "VolumeBasedCalculationTechnique": "NONE",
        "ComplexImageComponent": "MAGNITUDE",
        "AcquisitionContrast": "UNKNOWN",
    }
    for keyword, value in description.items():
        setattr(ds, keyword, value)
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.AcquisitionContextSequence = DicomSequence([])
    spin_echo = "GR" not in scanning
    three_d = str(ds.get("MRAcquisitionType", "")) == "3D"
    pulse_sequence: dict[str, object] = {
        "PulseSequenceName": str(
            ds.get("SequenceName", "") or f"{sorted(scanning or {'SE'})[0]}{ds.MRAcquisitionType}"
        ),
        "EchoPulseSequence": "SPIN" if spin_echo else "GRADIENT",
        "MultiPlanarExcitation": "NO",
        "PhaseContrast": "NO",
        "TimeOfFlightContrast": "NO",
        "SteadyStatePulseSequence": "NONE",
        "EchoPlanarPulseSequence": "YES" if "EP" in scanning else "NO",
        "SaturationRecovery": "NO",
        "SpectrallySelectedSuppression": "NONE",
        "OversamplingPhase": "NONE",
        "GeometryOfKSpaceTraversal": "RECTILINEAR",
        "RectilinearPhaseEncodeReordering": "LINEAR",
        "SegmentedKSpaceTraversal": "SINGLE",
        "NumberOfKSpaceTrajectories": 1,
    }
    if spin_echo:
        pulse_sequence["MultipleSpinEcho"] = "NO"
    if three_d:
        pulse_sequence["CoverageOfKSpace"] = "FULL"
    for keyword in ("MultipleSpinEcho", "CoverageOfKSpace", *pulse_sequence):
        ds.pop(keyword, None)  # recomputed from the series' current scanning sequence
    if original:  # MR Pulse Sequence attributes and acquisition times: ORIGINAL or MIXED only
        for attribute, setting in pulse_sequence.items():
            setattr(ds, attribute, setting)
        ds.AcquisitionDateTime = acquisition_datetime
        ds.AcquisitionDuration = 120.0
    else:
        for keyword in ("MRAcquisitionType", "AcquisitionDateTime", "AcquisitionDuration"):
            ds.pop(keyword, None)

    shared = ds.SharedFunctionalGroupsSequence[0]
    frame_type = _group(shared, "MRImageFrameTypeSequence", **description)
    frame_type.FrameType = image_type  # the frames are what the image is (set again on edits)
    _group(
        shared,
        "PixelValueTransformationSequence",
        RescaleIntercept=0,
        RescaleSlope=1,
        RescaleType="US",
    )
    if body_part:
        anatomy = _group(shared, "FrameAnatomySequence", FrameLaterality="U")
        anatomy.AnatomicRegionSequence = anatomic_region_sequence(body_part)
    else:
        shared.pop("FrameAnatomySequence", None)
    # The MR macros: required for ORIGINAL frames, and complete wherever present.
    # Repetition and echo time come from the generator (top level, or its own groups):
    # the MR sequence ranking reads them, so none is made up here.
    timing = _group(
        shared,
        "MRTimingAndRelatedParametersSequence",
        **_present(ds, "RepetitionTime"),
        FlipAngle=90,
        EchoTrainLength=1,
        RFEchoTrainLength=1,
        GradientEchoTrainLength=0,
    )
    timing.setdefault(
        "SpecificAbsorptionRateSequence",
        DicomSequence(
            [
                sequence_item(
                    SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                    SpecificAbsorptionRateValue=0.5,
                )
            ]
        ),
    )
    timing.setdefault(
        "OperatingModeSequence",
        DicomSequence(
            [
                sequence_item(OperatingModeType=kind, OperatingMode="IEC_NORMAL")
                for kind in ("STATIC FIELD", "RF", "GRADIENT")
            ]
        ),
    )
    _group(shared, "MREchoSequence", **_present(ds, "EchoTime", as_keyword="EffectiveEchoTime"))
    _group(
        shared,
        "MRModifierSequence",
        InversionRecovery="NO",
        FlowCompensation="NONE",
        T2Preparation="NO",
        SpectrallySelectedExcitation="NONE",
        SpatialPresaturation="NONE",
        PartialFourier="NO",
        ParallelAcquisition="NO",
    )
    _group(
        shared,
        "MRImagingModifierSequence",
        MagnetizationTransfer="NONE",
        BloodSignalNulling="NO",
        Tagging="NONE",
        TransmitterFrequency=float(ds.get("ImagingFrequency", 127.7)),
        PixelBandwidth=200.0,
    )
    _group(
        shared,
        "MRReceiveCoilSequence",
        ReceiveCoilName="HEAD",
        ReceiveCoilManufacturerName="",
        ReceiveCoilType="VOLUME",
        QuadratureReceiveCoil="YES",
    )
    _group(
        shared,
        "MRTransmitCoilSequence",
        TransmitCoilName="BODY",
        TransmitCoilManufacturerName="",
        TransmitCoilType="BODY",
    )
    _group(
        shared,
        "MRFOVGeometrySequence",
        InPlanePhaseEncodingDirection="ROW",
        MRAcquisitionFrequencyEncodingSteps=int(ds.Columns),
        MRAcquisitionPhaseEncodingStepsInPlane=int(ds.Rows),
        PercentSampling=100.0,
        PercentPhaseFieldOfView=100.0,
    )
    _group(shared, "MRAveragesSequence", NumberOfAverages=1.0)

    ds.DimensionOrganizationSequence = DicomSequence(
        [sequence_item(DimensionOrganizationUID=UID(dimension_organization_uid))]
    )
    ds.DimensionIndexSequence = DicomSequence(
        [
            sequence_item(
                DimensionOrganizationUID=UID(dimension_organization_uid),
                DimensionIndexPointer=pointer,
                FunctionalGroupPointer=0x00209111,  # Frame Content Sequence
                DimensionDescriptionLabel=label,
            )
            for pointer, label in ((0x00209056, "Stack ID"), (0x00209057, "In-Stack Position"))
        ]
    )
    for group in ds.PerFrameFunctionalGroupsSequence:
        content = group.FrameContentSequence[0]
        content.DimensionIndexValues = [1, int(content.InStackPositionNumber)]
        if original:
            content.FrameAcquisitionDateTime = acquisition_datetime
            content.FrameReferenceDateTime = acquisition_datetime
            content.FrameAcquisitionDuration = 120.0


def _present(ds: Dataset, keyword: str, *, as_keyword: str = "") -> dict[str, object]:
    return {as_keyword or keyword: ds.get(keyword)} if keyword in ds else {}


def _values(value: object) -> list[object]:
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]


def _group(holder: Dataset, sequence: str, **defaults: object) -> Dataset:
    """The first item of ``holder``'s ``sequence`` (created if absent), with ``defaults`` set
    where the item has no value yet."""
    if not holder.get(sequence):
        setattr(holder, sequence, DicomSequence([Dataset()]))
    item: Dataset = holder[sequence].value[0]
    for keyword, value in defaults.items():
        if keyword not in item:
            setattr(item, keyword, value)
    return item


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
