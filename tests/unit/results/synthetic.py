"""Generated images with known lesions, and analysis results on them (test helper).

The images are valid enough for dciodvfy to judge the result objects built from them, and
each comes with the boolean mask of its lesion, so tests can check where overlays land.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from integrations.dicom.uids import derived_uid
from models.results import (
    AnalysisResult,
    CodedConcept,
    Finding,
    Heatmap,
    ImageReference,
    Measurement,
    ModelIdentity,
    UrgencyTier,
)

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

PNEUMOTHORAX = CodedConcept("36118008", "SCT", "Pneumothorax")
NODULE = CodedConcept("27925004", "SCT", "Nodule")
HEMORRHAGE = CodedConcept("50960005", "SCT", "Hemorrhage")
EFFUSION = CodedConcept("60046008", "SCT", "Pleural effusion")
DIAMETER = CodedConcept("81827009", "SCT", "Diameter")
VOLUME = CodedConcept("118565006", "SCT", "Volume")
MILLIMETER = CodedConcept("mm", "UCUM", "mm")
MILLILITER = CodedConcept("mL", "UCUM", "mL")

MODEL = ModelIdentity(
    name="cxr-densenet121",
    version="1.2.0",
    manufacturer="pacsflow",
    weights_sha256="ab" * 32,
    clinical_use=False,
    intended_use="Triage of chest radiographs (demo)",
)


@dataclass(frozen=True)
class Lesion:
    """An ellipse in pixel index space (row, column)."""

    center: tuple[float, float]
    radii: tuple[float, float]

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
        return (
            ((rows - self.center[0]) / self.radii[0]) ** 2
            + ((columns - self.center[1]) / self.radii[1]) ** 2
        ) <= 1.0


def _uid(*parts: object) -> str:
    return derived_uid("pacsflow-test", *(str(part) for part in parts))


def _base(
    sop_class_uid: str,
    *,
    key: str,
    study_key: str,
    patient_name: str,
    patient_id: str,
    character_set: str | None,
    study_date: str,
    accession_number: str,
    modality: str,
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class_uid
    if character_set:
        ds.SpecificCharacterSet = character_set
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = _uid(study_key, key, "instance")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = _uid(study_key, "study")
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = "HOSP"
    ds.PatientBirthDate = "19610213"
    ds.PatientSex = "F"
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = accession_number
    ds.StudyID = "1"
    ds.ReferringPhysicianName = "Referrer^Rita"
    ds.Modality = modality
    ds.Manufacturer = "Acme Imaging"
    ds.ManufacturerModelName = "Model 9"
    ds.DeviceSerialNumber = "SN-1"
    ds.SoftwareVersions = "4.2"
    ds.InstitutionName = "Hôpital Général"
    ds.ContentDate = study_date
    ds.ContentTime = "101600"
    ds.BurnedInAnnotation = "NO"
    return ds


def chest_radiograph(
    *,
    lesion: Lesion = Lesion((205.0, 78.0), (16.0, 12.0)),
    shape: tuple[int, int] = (320, 256),
    patient_name: str = "Doe^Jane",
    patient_id: str = "PAT001",
    character_set: str | None = "ISO_IR 100",
    photometric: str = "MONOCHROME2",
    study_key: str = "cxr-1",
    study_date: str = "20250102",
    accession_number: str = "ACC001",
    window: tuple[float, float] = (1800.0, 2400.0),
) -> tuple[Dataset, np.ndarray]:
    """A DX chest image (12 bit) with a bright lesion; returns the dataset and the lesion mask."""
    ds = _base(
        DX_STORAGE,
        key="dx",
        study_key=study_key,
        patient_name=patient_name,
        patient_id=patient_id,
        character_set=character_set,
        study_date=study_date,
        accession_number=accession_number,
        modality="DX",
    )
    ds.SeriesInstanceUID = _uid(study_key, "dx-series")
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.ImageLaterality = "U"
    ds.PatientOrientation = ["L", "F"]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PositionerType = ""
    ds.DetectorType = "DIRECT"
    ds.AcquisitionContextSequence = []
    region = Dataset()
    region.CodeValue = "816094009"
    region.CodingSchemeDesignator = "SCT"
    region.CodeMeaning = "Chest"
    ds.AnatomicRegionSequence = [region]
    view = Dataset()
    view.CodeValue = "272479007"
    view.CodingSchemeDesignator = "SCT"
    view.CodeMeaning = "postero-anterior"
    view.ViewModifierCodeSequence = []
    ds.ViewCodeSequence = [view]
    ds.KVP = "120"
    ds.ImagerPixelSpacing = [0.4, 0.4]
    ds.PixelSpacing = [0.4, 0.4]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.WindowCenter, ds.WindowWidth = window
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1
    ds.PresentationLUTShape = "IDENTITY" if photometric == "MONOCHROME2" else "INVERSE"
    ds.LossyImageCompression = "00"
    mask = lesion.mask(shape)
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
    body = 900 + 700 * np.exp(-(((columns - shape[1] / 2) / (shape[1] / 3)) ** 2))
    ribs = 150 * (np.sin(rows / 9.0) > 0.6)
    pixels = body + ribs + rows * 1.5
    pixels[mask] += 1200
    if photometric == "MONOCHROME1":
        pixels = 4095 - pixels
    ds.PixelData = np.clip(pixels, 0, 4095).astype(np.uint16).tobytes()
    return ds, mask


def ct_series(
    *,
    slices: int = 3,
    lesion: Lesion = Lesion((40.0, 70.0), (9.0, 7.0)),
    lesion_slices: Sequence[int] = (1,),
    shape: tuple[int, int] = (96, 112),
    patient_name: str = "Doe^Jane",
    patient_id: str = "PAT001",
    character_set: str | None = "ISO_IR 100",
    study_key: str = "ct-1",
    study_date: str = "20250102",
    accession_number: str = "ACC101",
) -> tuple[list[Dataset], list[np.ndarray]]:
    """An axial head CT series with a hyperdense lesion on ``lesion_slices`` (0-based)."""
    datasets: list[Dataset] = []
    masks: list[np.ndarray] = []
    series_uid = _uid(study_key, "ct-series")
    frame_of_reference = _uid(study_key, "for")
    for index in range(slices):
        ds = _base(
            CT_STORAGE,
            key=f"ct-{index}",
            study_key=study_key,
            patient_name=patient_name,
            patient_id=patient_id,
            character_set=character_set,
            study_date=study_date,
            accession_number=accession_number,
            modality="CT",
        )
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 2
        ds.InstanceNumber = index + 1
        ds.FrameOfReferenceUID = frame_of_reference
        ds.PositionReferenceIndicator = ""
        ds.BodyPartExamined = "HEAD"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-56.0, -48.0, 5.0 * index]
        ds.SliceThickness = 5.0
        ds.PixelSpacing = [1.0, 1.0]
        ds.KVP = "120"
        ds.AcquisitionNumber = 1
        ds.PatientPosition = "HFS"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = shape
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.WindowCenter = 40
        ds.WindowWidth = 80
        rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
        brain = ((rows - shape[0] / 2) / (shape[0] * 0.42)) ** 2 + (
            (columns - shape[1] / 2) / (shape[1] * 0.4)
        ) ** 2 <= 1
        hounsfield = np.where(brain, 35.0, -1000.0)
        mask = lesion.mask(shape) if index in lesion_slices else np.zeros(shape, bool)
        hounsfield[mask] = 75.0
        ds.PixelData = (hounsfield + 1024).astype(np.int16).tobytes()
        datasets.append(ds)
        masks.append(mask)
    return datasets, masks


def reference(ds: Dataset, frame_number: int | None = None) -> ImageReference:
    return ImageReference(
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        frame_number=frame_number,
    )


def gaussian_heatmap(
    shape: tuple[int, int], center: tuple[float, float], sigma: tuple[float, float]
) -> np.ndarray:
    """A Grad-CAM-like map in [0, 1] with its peak (1.0) at ``center`` (row, column)."""
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
    values = np.exp(
        -0.5 * (((rows - center[0]) / sigma[0]) ** 2 + ((columns - center[1]) / sigma[1]) ** 2)
    )
    return (values / values.max()).astype(np.float32)


def chest_analysis(
    image: Dataset,
    lesion: Lesion,
    *,
    probability: float = 0.91,
    present: bool = True,
    analyzer: str = "chest-xray",
    model: ModelIdentity = MODEL,
) -> AnalysisResult:
    """A chest X-ray result: pneumothorax present with a heatmap on the lesion, effusion absent."""
    ref = reference(image)
    shape = (int(image.Rows), int(image.Columns))
    findings = (
        Finding(
            label="pneumothorax",
            code=PNEUMOTHORAX,
            probability=probability,
            threshold=0.5,
            present=present,
            tier=UrgencyTier.CRITICAL,
            images=(ref,),
        ),
        Finding(
            label="effusion",
            code=EFFUSION,
            probability=0.08,
            threshold=0.4,
            present=False,
            tier=UrgencyTier.URGENT,
            images=(ref,),
        ),
    )
    heatmaps = (
        (
            Heatmap(
                label="pneumothorax",
                image=ref,
                values=gaussian_heatmap(
                    shape, lesion.center, (lesion.radii[0] * 1.1, lesion.radii[1] * 1.1)
                ),
            ),
        )
        if present
        else ()
    )
    return AnalysisResult(
        analyzer=analyzer,
        model=model,
        status="analysed",
        findings=findings,
        heatmaps=heatmaps,
        analysed_images=(ref,),
        inference_seconds=0.1,
    )


def head_ct_analysis(
    images: Sequence[Dataset],
    lesion: Lesion,
    lesion_slices: Sequence[int] = (1,),
    *,
    volume_ml: float = 12.5,
    diameter_mm: float | None = None,
    model: ModelIdentity = MODEL,
) -> AnalysisResult:
    """A head CT result: hemorrhage present with its volume, heatmaps on the lesion slices."""
    shape = (int(images[0].Rows), int(images[0].Columns))
    measurements = [Measurement(VOLUME, volume_ml, MILLILITER)]
    if diameter_mm is not None:
        measurements.append(Measurement(DIAMETER, diameter_mm, MILLIMETER))
    lesion_refs = tuple(reference(images[index]) for index in lesion_slices)
    finding = Finding(
        label="hemorrhage",
        code=HEMORRHAGE,
        probability=0.97,
        threshold=0.6,
        present=True,
        tier=UrgencyTier.CRITICAL,
        images=lesion_refs,
        measurements=tuple(measurements),
    )
    heatmaps = tuple(
        Heatmap(
            label="hemorrhage",
            image=ref,
            values=gaussian_heatmap(shape, lesion.center, (lesion.radii[0], lesion.radii[1])),
        )
        for ref in lesion_refs
    )
    return AnalysisResult(
        analyzer="head-ct",
        model=ModelIdentity(
            name="ct-hemorrhage",
            version="0.9.1",
            manufacturer=model.manufacturer,
            weights_sha256="cd" * 32,
            clinical_use=False,
        ),
        status="analysed",
        findings=(finding,),
        heatmaps=heatmaps,
        analysed_images=tuple(reference(image) for image in images),
    )


def not_analysable(
    image: Dataset, reason: str = "image is not a frontal chest radiograph"
) -> AnalysisResult:
    return AnalysisResult(
        analyzer="chest-xray",
        model=MODEL,
        status="not_analysable",
        reason=reason,
    )


FIXED_NOW = datetime.datetime(2025, 1, 2, 11, 30, 0)


MULTIFRAME_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"


def multiframe_image(
    *,
    frames: int = 4,
    lesion_frame: int = 3,
    lesion: Lesion = Lesion((30.0, 50.0), (7.0, 9.0)),
    shape: tuple[int, int] = (64, 80),
    study_key: str = "mf-1",
) -> tuple[Dataset, np.ndarray]:
    """A multi-frame grey-scale image (Multi-frame Grayscale Word SC) with a lesion on one frame."""
    ds = _base(
        MULTIFRAME_WORD_SC,
        key="mf",
        study_key=study_key,
        patient_name="Doe^Jane",
        patient_id="PAT001",
        character_set="ISO_IR 100",
        study_date="20250102",
        accession_number="ACC201",
        modality="OT",
    )
    ds.SeriesInstanceUID = _uid(study_key, "mf-series")
    ds.SeriesNumber = 3
    ds.InstanceNumber = 1
    ds.ConversionType = "WSD"
    ds.Laterality = ""  # no body part: unknown
    ds.PresentationLUTShape = "IDENTITY"
    ds.PatientOrientation = ["L", "P"]
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.FrameTime = 100.0
    ds.Rows, ds.Columns = shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.WindowCenter = 1000
    ds.WindowWidth = 1600
    mask = lesion.mask(shape)
    volume = np.full((frames, *shape), 600, dtype=np.uint16)
    volume[lesion_frame - 1][mask] = 1500
    ds.PixelData = volume.tobytes()
    return ds, mask
