"""Generated brain MR studies with the headers real vendors send (pure: datasets in memory).

A clinical brain MR is several series: a localizer, diffusion, T2, FLAIR, T1 before and after
contrast, as 2D multi-slice stacks of about twenty 5 mm slices. Real headers carry no
BodyPartExamined, describe the study in the site's language, name sequences the vendor's way
(Siemens "t2_tirm_tra_dark-fluid", Philips "T2W_TSE", GE "Ax T2 FLAIR") and add private
elements. Each profile here reproduces one such study, pixels from :mod:`models.phantoms.brain`
(a post-contrast-looking head in every series: the headers are what these studies test).
``multiframe`` turns every series into one Enhanced MR object whose timing, inversion and
contrast live in the functional groups (as Philips and newer Siemens send them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from models.phantoms.base import PhantomStudy, phantom_uid
from models.phantoms.brain import brain_mri_study
from models.phantoms.dicom import enhanced_mr_modules, sequence_item

Vendor = Literal["siemens", "philips", "ge"]
KIND = "vendor-mr"


@dataclass(frozen=True)
class SeriesSpec:
    name: str  # what the tests call it: localizer, dwi, t2, flair, t1, t1_post
    description: str
    slices: int
    headers: Mapping[str, Any] = field(default_factory=dict)
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0)


STUDY_DESCRIPTIONS: dict[Vendor, str] = {
    "siemens": "MRT Schädel nativ und mit KM",
    "philips": "MRI hersenen",
    "ge": "IRM CÉRÉBRALE SANS ET AVEC INJECTION",
}

PROFILES: dict[Vendor, tuple[SeriesSpec, ...]] = {
    "siemens": (
        SeriesSpec(
            "localizer",
            "AAHead_Scout_64ch-head-coil",
            3,
            {
                "ScanningSequence": "GR",
                "SequenceName": "*fl2d1",
                "EchoTime": 3.0,
                "RepetitionTime": 8.6,
                "ImageType": ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"],
            },
        ),
        SeriesSpec(
            "dwi",
            "ep2d_diff_3scan_trace_p2_TRACEW",
            20,
            {
                "ScanningSequence": "EP",
                "SequenceName": "*ep_b1000t",
                "EchoTime": 89.0,
                "RepetitionTime": 5200.0,
                "ImageType": ["DERIVED", "PRIMARY", "DIFFUSION", "TRACEW"],
            },
        ),
        SeriesSpec(
            "t2",
            "t2_tse_tra_p2",
            20,
            {
                "ScanningSequence": "SE",
                "SequenceVariant": ["SK", "SP", "OSP"],
                "SequenceName": "*tse2d1_15",
                "EchoTime": 96.0,
                "RepetitionTime": 4000.0,
            },
        ),
        SeriesSpec(
            "flair",
            "t2_tirm_tra_dark-fluid",
            20,
            {
                "ScanningSequence": ["SE", "IR"],
                "SequenceVariant": ["SK", "SP", "MP", "OSP"],
                "SequenceName": "*tir2d1_13",
                "InversionTime": 2500.0,
                "EchoTime": 81.0,
                "RepetitionTime": 9000.0,
            },
        ),
        SeriesSpec(
            "t1",
            "t1_se_tra nativ",
            20,
            {
                "ScanningSequence": "SE",
                "SequenceName": "*se2d1",
                "EchoTime": 12.0,
                "RepetitionTime": 550.0,
            },
        ),
        SeriesSpec(
            "t1_post",
            "t1_se_tra_KM",
            20,
            {
                "ScanningSequence": "SE",
                "SequenceName": "*se2d1",
                "EchoTime": 12.0,
                "RepetitionTime": 550.0,
                "ContrastBolusAgent": "Gadovist",
            },
        ),
    ),
    "philips": (
        SeriesSpec(
            "localizer",
            "Survey",
            3,
            {
                "ScanningSequence": "GR",
                "EchoTime": 4.6,
                "RepetitionTime": 11.0,
                "ImageType": ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"],
            },
        ),
        SeriesSpec(
            "dwi",
            "DWI_SENSE",
            24,
            {
                "ScanningSequence": "SE",
                "EchoTime": 72.0,
                "RepetitionTime": 3400.0,
                "ImageType": ["ORIGINAL", "PRIMARY", "DIFFUSION", "M_SE", "M", "SE"],
            },
        ),
        # Philips names sequences tersely: the FLAIR and T2 are told apart by their timings.
        SeriesSpec(
            "flair",
            "AX 5mm",
            24,
            {
                "ScanningSequence": "IR",
                "InversionTime": 2800.0,
                "EchoTime": 125.0,
                "RepetitionTime": 11000.0,
            },
        ),
        SeriesSpec(
            "t2",
            "AX TSE 5mm",
            24,
            {"ScanningSequence": "SE", "EchoTime": 100.0, "RepetitionTime": 3000.0},
        ),
        SeriesSpec(
            "t1_post",
            "sT1W_3D_TFE +C",
            24,
            {"ScanningSequence": "GR", "EchoTime": 3.5, "RepetitionTime": 8.0},
        ),
    ),
    "ge": (
        SeriesSpec(
            "localizer",
            "3-Plane Loc",
            3,
            {
                "ScanningSequence": "GR",
                "EchoTime": 1.6,
                "RepetitionTime": 5.0,
                "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"],
            },
        ),
        SeriesSpec(
            "sag_t1",
            "Sag T1 FLAIR",
            20,
            {
                "ScanningSequence": ["SE", "IR"],
                "InversionTime": 860.0,
                "EchoTime": 9.0,
                "RepetitionTime": 2200.0,
            },
            orientation=(0, 1, 0, 0, 0, -1),
        ),
        SeriesSpec(
            "t2",
            "Ax T2 FSE",
            22,
            {"ScanningSequence": "SE", "EchoTime": 102.0, "RepetitionTime": 4500.0},
        ),
        SeriesSpec(
            "t1_post",
            "Ax T1 SE + GADO",
            22,
            {
                "ScanningSequence": "SE",
                "EchoTime": 10.0,
                "RepetitionTime": 500.0,
                "ContrastBolusAgent": "DOTAREM",
            },
        ),
        SeriesSpec(
            "swi",
            "Ax SWAN",
            40,
            {"ScanningSequence": "GR", "EchoTime": 25.0, "RepetitionTime": 40.0},
        ),
    ),
}

STATIONS: dict[Vendor, str] = {"siemens": "AWP45123", "philips": "PHILIPS-8E1R2Q", "ge": "GEMR3T"}
PRIVATE: dict[Vendor, tuple[int, str]] = {
    "siemens": (0x0029, "SIEMENS CSA HEADER"),
    "philips": (0x2005, "Philips MR Imaging DD 001"),
    "ge": (0x0043, "GEMS_PARM_01"),
}
# Functional group that carries each classic attribute in an Enhanced MR object.
ENHANCED_GROUPS = {
    "RepetitionTime": "MRTimingAndRelatedParametersSequence",
    "EchoTime": "MREchoSequence",
    "InversionTime": "MRModifierSequence",
}


def vendor_brain_mr_study(
    seed: int,
    vendor: Vendor = "siemens",
    *,
    tumour: bool = False,
    matrix: int = 64,
    spacing_mm: float = 5.0,
    multiframe: bool = False,
) -> PhantomStudy:
    """One brain MR study as ``vendor`` sends it, every series a 2D stack ``spacing_mm`` apart.

    ``study.series[name]`` is not kept: series are told apart by their Series Instance UID,
    ``phantom_uid("vendor-mr", seed, vendor, name, "series")``.
    """
    study = PhantomStudy(KIND, [], frozenset())
    for number, spec in enumerate(PROFILES[vendor], start=1):
        source = brain_mri_study(
            seed,
            tumour,
            slices=spec.slices,
            spacing_mm=spacing_mm,
            matrix=matrix,
            multiframe=multiframe,
            patient_id=f"VENDOR-{seed:04d}",
            accession_number=f"VMR{seed:05d}",
        )
        series_uid = series_uid_of(seed, vendor, spec.name)
        for index, ds in enumerate(source.datasets):
            _apply(ds, vendor, spec, number, series_uid, seed, index, multiframe)
            study.datasets.append(ds)
    return study


def series_uid_of(seed: int, vendor: Vendor, name: str) -> str:
    return phantom_uid(KIND, seed, vendor, name, "series")


def _apply(
    ds: Dataset,
    vendor: Vendor,
    spec: SeriesSpec,
    number: int,
    series_uid: str,
    seed: int,
    index: int,
    multiframe: bool,
) -> None:
    sop_uid = UID(phantom_uid(KIND, seed, vendor, spec.name, index))
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = UID(series_uid)
    ds.SeriesNumber = number
    ds.StudyDescription = STUDY_DESCRIPTIONS[vendor]
    ds.SeriesDescription = spec.description
    ds.ProtocolName = spec.description
    ds.StationName = STATIONS[vendor]
    ds.Manufacturer = {"siemens": "SIEMENS", "philips": "Philips", "ge": "GE MEDICAL SYSTEMS"}[
        vendor
    ]
    ds.MRAcquisitionType = "2D"
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: "Schädel", "CÉRÉBRALE"
    del ds.BodyPartExamined
    ds.Laterality = ""  # Type 2C: scanners send it empty when the body part is not given
    stale: tuple[str, ...] = (
        "ContrastBolusAgent",
        "SequenceVariant",
        "ScanningSequence",
        "ImageType",
    )
    if multiframe:  # Enhanced MR has no top-level timing: it lives in the functional groups
        stale += tuple(ENHANCED_GROUPS)
    for keyword in stale:
        if keyword in ds:
            delattr(ds, keyword)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = ["SK"]
    ds.ProtocolName = spec.description
    for keyword, value in spec.headers.items():
        if multiframe and keyword in ENHANCED_GROUPS:
            continue
        setattr(ds, keyword, value)
    if "ImageOrientationPatient" in ds:
        ds.ImageOrientationPatient = list(spec.orientation)
    group, creator = PRIVATE[vendor]
    block = ds.private_block(group, creator, create=True)
    block.add_new(0x10, "OB", b"\x00" * 16)
    block.add_new(0x11, "LO", f"{vendor} private {spec.name}")
    if multiframe:
        _enhanced_groups(ds, spec)
        enhanced_mr_modules(
            ds,
            body_part=None,  # real profiles code no anatomy: routing reads their descriptions
            acquisition_datetime=str(ds.StudyDate) + str(ds.StudyTime),
            dimension_organization_uid=phantom_uid(KIND, seed, vendor, spec.name, "dimensions"),
        )


def _enhanced_groups(ds: Dataset, spec: SeriesSpec) -> None:
    shared = ds.SharedFunctionalGroupsSequence[0]
    for stale in ("MRTimingAndRelatedParametersSequence", "MREchoSequence"):  # the T1's
        shared.pop(stale, None)
    headers = spec.headers
    shared.PlaneOrientationSequence = DicomSequence(
        [sequence_item(ImageOrientationPatient=list(spec.orientation))]
    )
    if "RepetitionTime" in headers:
        shared.MRTimingAndRelatedParametersSequence = DicomSequence(
            [sequence_item(RepetitionTime=headers["RepetitionTime"], FlipAngle=90)]
        )
    if "EchoTime" in headers:
        shared.MREchoSequence = DicomSequence(
            [sequence_item(EffectiveEchoTime=headers["EchoTime"])]
        )
    inversion = "InversionTime" in headers
    shared.MRModifierSequence = DicomSequence(
        [
            sequence_item(
                InversionRecovery="YES" if inversion else "NO",
                **({"InversionTimes": [headers["InversionTime"]]} if inversion else {}),
            )
        ]
    )
    ds.InversionRecovery = "YES" if inversion else "NO"
