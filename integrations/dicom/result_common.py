"""What every pacsflow result object shares: kinds, deterministic UIDs, equipment, series context (pure).

A result object's SOP Instance UID names one content (issue 9): it derives from the study,
the analyzer, the model (name, version and weights digest), the kind of object and the
*input digest* (:mod:`integrations.dicom.result_inputs`: what the analysis concluded, the
source images, the output profile and, for the SR, the prior used). A rerun with the same
inputs therefore gives the same UIDs and, with the content time taken from the study rather
than the wall clock, the same bytes; changed inputs give new UIDs. Every kind keeps one series
across reruns and generations; a later generation gets higher Instance Numbers, and the SR
that replaces another names it in the Predecessor Documents Sequence.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeVar, cast

import numpy as np
from highdicom import ContributingEquipment
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom import Dataset, dcmread
from pydicom.charset import convert_encodings, python_encoding
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from integrations.dicom import result_codes
from integrations.dicom.result_inputs import overlay_inputs_digest
from integrations.dicom.uids import derived_uid, is_valid_uid
from integrations.settings import ResultsSettings
from models.results import AnalysisResult, Finding, ImageReference

AnyDataset = TypeVar("AnyDataset", bound=Dataset)
UTF8: Final = "ISO_IR 192"
# What every highdicom constructor is told (its ``specific_character_set``): highdicom
# accepts only its own list of terms and raises on what sites really send (the blank first
# value of ``\ISO 2022 IR 87``, ``ISO_IR 6``, ``ISO IR 192``), and would otherwise take the
# source's. :func:`finish_dataset` then declares the set the object is written in.
BUILD_CHARACTER_SET: Final = UTF8
TEXT_VRS: Final = frozenset({"SH", "LO", "ST", "LT", "PN", "UT", "UC"})
PACSFLOW_SOFTWARE: Final = "pacsflow 0.1"

# Body parts that come in pairs (CID 4031 terms): for these, Laterality (General Series, Type 2C)
# must be present; for any other known body part it must be absent (dciodvfy checks both).
PAIRED_BODY_PARTS: Final = frozenset(
    {
        "ANKLE", "ARM", "BREAST", "CLAVICLE", "EAR", "ELBOW", "EXTREMITY", "EYE", "FEMUR",
        "FIBULA", "FINGER", "FOOT", "FOREARM", "HAND", "HEEL", "HIP", "HUMERUS", "KIDNEY",
        "KNEE", "LEG", "LOWER LIMB", "LUNG", "ORBIT", "OVARY", "PAROTID", "RADIUS", "SCAPULA",
        "SHOULDER", "TESTIS", "THIGH", "THUMB", "TIBIA", "TOE", "ULNA", "UPPER LIMB", "WRIST",
        "ADRENAL", "SUBMANDIBULAR", "SACROILIAC", "TMJ",
    }
)  # fmt: skip


class ResultKind(StrEnum):
    """The carriers a site can choose (``[results] carriers``); values are the settings names."""

    SR = "sr"
    GSPS = "gsps"
    SECONDARY_CAPTURE = "secondary_capture"
    SEGMENTATION = "segmentation"
    PARAMETRIC_MAP = "parametric_map"

    @property
    def series_offset(self) -> int:
        return _SERIES_OFFSET[self]

    @property
    def series_description(self) -> str:
        return _SERIES_DESCRIPTION[self]


_SERIES_OFFSET = {
    ResultKind.SR: 1,
    ResultKind.GSPS: 2,
    ResultKind.SECONDARY_CAPTURE: 3,
    ResultKind.SEGMENTATION: 4,
    ResultKind.PARAMETRIC_MAP: 5,
}
_SERIES_DESCRIPTION = {
    ResultKind.SR: "AI findings",
    ResultKind.GSPS: "AI heatmap contours",
    ResultKind.SECONDARY_CAPTURE: "AI overlay",
    ResultKind.SEGMENTATION: "AI heatmap segmentation",
    ResultKind.PARAMETRIC_MAP: "AI saliency map",
}


@dataclass(frozen=True)
class ResultObject:
    """One DICOM object pacsflow sends to the PACS: its kind and the dataset (written elsewhere)."""

    kind: ResultKind
    dataset: Dataset

    @property
    def sop_class_uid(self) -> str:
        return str(self.dataset.SOPClassUID)

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def series_instance_uid(self) -> str:
        return str(self.dataset.SeriesInstanceUID)

    def to_bytes(self) -> bytes:
        """The object in DICOM File Format (preamble, file meta, dataset)."""
        return encode_dataset(self.dataset)


@dataclass(frozen=True)
class SkippedCarrier:
    """A carrier the profile asked for that this analysis cannot have, and why.

    ``series_instance_uid``: the analysed series it is skipped for; empty when for all of them.
    """

    kind: ResultKind
    reason: str
    series_instance_uid: str = ""

    def describe(self) -> str:
        """The plain-words line the SR and the run log carry."""
        return f"{self.kind.series_description} ({self.kind.value}) not produced: {self.reason}"


def encode_dataset(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def decode_dataset(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))


@dataclass(frozen=True)
class BuildContext:
    """The inputs every builder needs to name, number and stamp the objects of one analysis."""

    analysis: AnalysisResult
    profile: ResultsSettings
    generation: int
    now: datetime.datetime
    study_instance_uid: str
    input_digest: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.analysis, AnalysisResult):
            raise TypeError("analysis must be an AnalysisResult")
        if not isinstance(self.profile, ResultsSettings):
            raise TypeError("profile must be a ResultsSettings")
        if isinstance(self.generation, bool) or not isinstance(self.generation, int):
            raise TypeError("generation must be an int")
        if self.generation < 1:
            raise ValueError("generation must be 1 or more")
        if not is_valid_uid(self.study_instance_uid):
            raise ValueError(f"study_instance_uid is not a UID: {self.study_instance_uid!r}")

    @classmethod
    def for_study(
        cls,
        analysis: AnalysisResult,
        sources: Sequence[Dataset],
        profile: ResultsSettings,
        generation: int,
        now: datetime.datetime | None,
    ) -> BuildContext:
        """The context of a builder's call: the study is the one ``sources`` belong to, the time
        stamp now unless given."""
        return cls(
            analysis=analysis,
            profile=profile,
            generation=generation,
            now=now or datetime.datetime.now(),
            study_instance_uid=study_instance_uid_of(sources),
            input_digest=(
                overlay_inputs_digest(analysis, sources, profile)
                if isinstance(analysis, AnalysisResult) and isinstance(profile, ResultsSettings)
                else ""  # __post_init__ names the wrong argument
            ),
        )

    @property
    def model_seed(self) -> str:
        return self.analysis.model.algorithm_uid_seed

    def series_instance_uid(self, kind: ResultKind) -> str:
        """Stable across generations: every generation of a kind lands in the same series."""
        return derived_uid(
            self.study_instance_uid, self.analysis.analyzer, self.model_seed, kind.value, "series"
        )

    def sop_instance_uid(self, kind: ResultKind, *parts: str | int) -> str:
        """One content, one UID: the same inputs give the same UID, changed inputs a new one."""
        return derived_uid(
            self.study_instance_uid,
            self.analysis.analyzer,
            self.model_seed,
            kind.value,
            "inputs",
            self.input_digest,
            *parts,
        )

    def instance_number(self, index: int = 0) -> int:
        """1, 2, ... for the first generation, 1001, 1002, ... for the second, and so on."""
        return (self.generation - 1) * 1000 + index + 1

    def series_number(self, kind: ResultKind) -> int:
        return self.profile.series_number_base + kind.series_offset

    @property
    def device_uid(self) -> str:
        """The AI model as a device: changes whenever the weights change."""
        return derived_uid("pacsflow-device", self.model_seed)

    @property
    def device_serial_number(self) -> str:
        return self.analysis.model.weights_sha256[:16] or "unknown"

    @property
    def software_versions(self) -> list[str]:
        return [self.analysis.model.version, PACSFLOW_SOFTWARE]

    def series_description(self, kind: ResultKind) -> str:
        model = self.analysis.model
        return f"{kind.series_description} ({model.name} {model.version})"[:64]

    def algorithm_equipment(self) -> Dataset:
        """Contributing Equipment item for the AI model, as IHE AIR asks."""
        model = self.analysis.model
        item = Dataset()
        item.PurposeOfReferenceCodeSequence = [result_codes.PROCESSING_ALGORITHM]
        item.Manufacturer = model.manufacturer[:64]
        item.ManufacturerModelName = model.name[:64]
        item.SoftwareVersions = model.version[:64]
        item.DeviceSerialNumber = self.device_serial_number
        item.DeviceUID = self.device_uid
        item.ContributionDateTime = self.now.strftime("%Y%m%d%H%M%S")
        description = f"AI analysis '{self.analysis.analyzer}'"
        if model.intended_use:
            description += f": {model.intended_use}"
        item.ContributionDescription = description[:1024]
        return item

    def institution_name(self, source: Dataset) -> str | None:
        if self.profile.institution_name:
            return self.profile.institution_name
        value = str(source.get("InstitutionName", "") or "")
        return value or None


def study_instance_uid_of(sources: Sequence[Dataset], argument: str = "sources") -> str:
    """The one Study Instance UID all ``sources`` share, or ValueError naming ``argument``."""
    if len(sources) == 0:
        raise ValueError(f"{argument} must contain at least one source image")
    for source in sources:
        if not isinstance(source, Dataset):
            raise TypeError(f"{argument} must contain pydicom Datasets")
    studies = {str(source.get("StudyInstanceUID", "")) for source in sources}
    if len(studies) != 1:
        raise ValueError(f"{argument} must all belong to one study, got {sorted(studies)}")
    (study,) = studies
    if not is_valid_uid(study):
        raise ValueError(f"{argument} have no valid Study Instance UID: {study!r}")
    return study


def index_sources(sources: Sequence[Dataset]) -> dict[str, Dataset]:
    """Sources by SOP Instance UID."""
    return {str(source.SOPInstanceUID): source for source in sources}


def source_for(reference: ImageReference, by_uid: dict[str, Dataset], argument: str) -> Dataset:
    try:
        return by_uid[reference.sop_instance_uid]
    except KeyError:
        raise ValueError(
            f"{argument} refers to image {reference.sop_instance_uid}, which is not among sources"
        ) from None


def frame_count(source: Dataset) -> int:
    return int(source.get("NumberOfFrames", 1) or 1)


def check_frame(reference: ImageReference, source: Dataset, argument: str) -> int | None:
    """The referenced frame (None for single-frame images), validated against the source."""
    frames = frame_count(source)
    number = reference.frame_number
    if number is None:
        if frames > 1:
            raise ValueError(f"{argument} refers to multi-frame image without a frame number")
        return None
    if not 1 <= number <= frames:
        raise ValueError(f"{argument} frame {number} is outside 1..{frames}")
    return number if frames > 1 else None


def finish_series(
    dataset: AnyDataset,
    *,
    context: BuildContext,
    kind: ResultKind,
    source: Dataset,
    description: str | None = None,
    add_acquisition_equipment: bool = True,
) -> AnyDataset:
    """Apply what every result object needs beyond highdicom's defaults, in place.

    Series description, dates from ``context.now``, Body Part Examined and Laterality from the
    source, the AI model in the Contributing Equipment Sequence, the private coding scheme,
    and a Specific Character Set that can encode every text value.
    """
    dataset.SeriesDescription = (description or context.series_description(kind))[:64]
    date = context.now.strftime("%Y%m%d")
    time = context.now.strftime("%H%M%S")
    for keyword, value in (("SeriesDate", date), ("SeriesTime", time)):
        setattr(dataset, keyword, value)
    # Only where the IOD has them (a GSPS has Presentation Creation, not Content, Date).
    for keyword, value in (
        ("ContentDate", date),
        ("ContentTime", time),
        ("PresentationCreationDate", date),
        ("PresentationCreationTime", time),
        ("InstanceCreationDate", date),
        ("InstanceCreationTime", time),
    ):
        if keyword in dataset:
            setattr(dataset, keyword, value)
    institution = context.institution_name(source)
    if institution and not dataset.get("InstitutionName"):
        dataset.InstitutionName = institution
    if kind != ResultKind.SR:  # the SR Document Series module has neither attribute
        copy_body_part_and_laterality(dataset, source)
    equipment = list(dataset.get("ContributingEquipmentSequence", []))
    purposes = [
        str(item.PurposeOfReferenceCodeSequence[0].CodeValue)
        for item in equipment
        if "PurposeOfReferenceCodeSequence" in item
    ]
    if add_acquisition_equipment and "109101" not in purposes:
        # A source that names no manufacturer has no acquisition equipment to record.
        with contextlib.suppress(AttributeError, ValueError):
            equipment.insert(0, ContributingEquipment.for_image_acquisition(source))
    for item in equipment:
        if "ContributionDateTime" in item:
            item.ContributionDateTime = context.now.strftime("%Y%m%d%H%M%S")
    equipment.append(context.algorithm_equipment())
    dataset.ContributingEquipmentSequence = equipment
    declare_private_scheme(dataset)
    derive_dimension_organization_uids(dataset)
    dataset.SpecificCharacterSet = choose_character_set(dataset, source.get("SpecificCharacterSet"))
    refresh_person_names(dataset)
    return dataset


def derive_dimension_organization_uids(dataset: Dataset) -> None:
    """Replace highdicom's random Dimension Organization UIDs by ones derived from the object.

    A random UID would make every rebuild of the same content a different byte stream.
    """
    organizations = dataset.get("DimensionOrganizationSequence") or []
    replacements = {
        str(item.DimensionOrganizationUID): derived_uid(
            str(dataset.SOPInstanceUID), "dimension-organization", index
        )
        for index, item in enumerate(organizations)
        if "DimensionOrganizationUID" in item
    }
    for item in organizations:
        if "DimensionOrganizationUID" in item:
            item.DimensionOrganizationUID = replacements[str(item.DimensionOrganizationUID)]
    for item in dataset.get("DimensionIndexSequence") or []:
        uid = str(item.get("DimensionOrganizationUID", ""))
        if uid in replacements:
            item.DimensionOrganizationUID = replacements[uid]


def refresh_person_names(dataset: Dataset) -> None:
    """Replace every PN value by a fresh one built from its text, in place.

    pydicom 3.0 caches the bytes of a PersonName made from text the first time it is
    encoded and returns them for any later character set: a name copied from a Latin-1 source
    that was written once (sent, saved) would land as Latin-1 bytes in a UTF-8 object.
    """
    for element in dataset:
        if element.VR == "SQ":
            for item in cast(Sequence[Dataset], element.value):
                refresh_person_names(item)
        elif element.VR == "PN" and element.value is not None:
            if isinstance(element.value, MultiValue | list):
                element.value = [str(value) for value in element.value]
            else:
                element.value = str(element.value)


def copy_body_part_and_laterality(dataset: Dataset, source: Dataset) -> None:
    """Body Part Examined and Laterality (General Series) following the source image.

    Laterality is Type 2C: a value when the source says left or right, absent when the body
    part is known and unpaired, empty (unknown) otherwise.
    """
    body_part = str(source.get("BodyPartExamined", "") or "").strip().upper()
    if body_part:
        dataset.BodyPartExamined = body_part
    elif "BodyPartExamined" in dataset:
        del dataset.BodyPartExamined
    laterality = str(source.get("Laterality", "") or "").strip().upper()
    if laterality not in ("L", "R"):
        image_laterality = str(source.get("ImageLaterality", "") or "").strip().upper()
        laterality = image_laterality if image_laterality in ("L", "R") else ""
    if laterality:
        dataset.Laterality = laterality
    elif (body_part and body_part not in PAIRED_BODY_PARTS) or (
        "SharedFunctionalGroupsSequence" in dataset
    ):
        # An enhanced multi-frame object (SEG, Parametric Map) gives laterality per frame
        # (Frame Anatomy), so an unknown one is absent at the series level.
        if "Laterality" in dataset:
            del dataset.Laterality
    else:
        dataset.Laterality = ""


def declare_private_scheme(dataset: Dataset) -> None:
    """Add 99PACSFLOW to the Coding Scheme Identification Sequence when the object uses it."""
    if not _uses_scheme(dataset, result_codes.PRIVATE_SCHEME):
        return
    items = list(dataset.get("CodingSchemeIdentificationSequence", []))
    if any(item.CodingSchemeDesignator == result_codes.PRIVATE_SCHEME for item in items):
        return
    items.append(
        CodingSchemeIdentificationItem(
            designator=result_codes.PRIVATE_SCHEME,
            name=result_codes.PRIVATE_SCHEME_NAME,
            responsible_organization=result_codes.PRIVATE_SCHEME_RESPONSIBLE,
        )
    )
    dataset.CodingSchemeIdentificationSequence = items


def _uses_scheme(dataset: Dataset, scheme: str) -> bool:
    for element in dataset:
        if element.VR == "SQ":
            if element.keyword == "CodingSchemeIdentificationSequence":
                continue
            if any(_uses_scheme(item, scheme) for item in element.value):
                return True
        elif element.keyword == "CodingSchemeDesignator" and element.value == scheme:
            return True
    return False


def choose_character_set(dataset: Dataset, source_character_set: object) -> str | list[str]:
    """The source's Specific Character Set when it encodes every text value, else UTF-8.

    A Latin-1 source keeps Latin-1 as long as our own texts (captions, reasons) fit in it;
    otherwise the whole object is written in ``ISO_IR 192`` so nothing is lost or replaced.
    """
    if source_character_set in (None, ""):
        terms: list[str] = []
    elif isinstance(source_character_set, str):
        terms = [source_character_set]
    else:
        terms = [str(term) for term in cast(Sequence[object], source_character_set)]
    if terms == [UTF8]:
        return UTF8
    if any(term.strip() and term.strip() not in python_encoding for term in terms):
        # A term that is not a defined one (``ISO IR 192``, a vendor's own): never repeated
        # in what we write; UTF-8 holds whatever pydicom made of the source's bytes.
        return UTF8
    terms = [term.strip() for term in terms]
    encodings = convert_encodings(terms) if terms else ["ascii"]
    if any(term in ("", "ISO_IR 6") for term in terms[:1]) and len(terms) == 1:
        encodings = ["ascii"]
    for text in _text_values(dataset):
        if not any(_encodes(text, encoding) for encoding in encodings):
            return UTF8
    if not terms:
        return "ISO_IR 6"
    return terms[0] if len(terms) == 1 else terms


def _encodes(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except (UnicodeError, LookupError):
        return False
    return True


def _text_values(dataset: Dataset) -> Iterable[str]:
    for element in dataset:
        if element.VR == "SQ":
            for item in cast(Sequence[Dataset], element.value):
                yield from _text_values(item)
        elif element.VR in TEXT_VRS and element.value is not None:
            values = (
                element.value if isinstance(element.value, MultiValue | list) else [element.value]
            )
            for value in values:
                if isinstance(value, PersonName):
                    yield str(value)
                elif isinstance(value, str):
                    yield value


# Type 2 attributes highdicom reads from a source image with attribute access.
_TYPE2_PATIENT_STUDY: Final = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_PIXEL_KEYWORDS: Final = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def with_type2_defaults(source: Dataset) -> Dataset:
    """``source`` itself, or a shallow copy with absent Type 2 patient/study attributes empty.

    Keeps the pixel data (a GSPS derives a window from it); highdicom reads these attributes
    from the referenced image with attribute access.
    """
    missing = [keyword for keyword in _TYPE2_PATIENT_STUDY if keyword not in source]
    if not missing:
        return source
    filled = copy.copy(source)
    for keyword in missing:
        setattr(filled, keyword, "")
    return filled


def header_copy(source: Dataset) -> Dataset:
    """A copy of ``source`` without pixel data, with absent Type 2 patient/study attributes empty."""
    header = Dataset()
    for element in source:
        if element.keyword not in _PIXEL_KEYWORDS:
            header.add(copy.deepcopy(element))
    if hasattr(source, "file_meta"):
        header.file_meta = source.file_meta
    for keyword in _TYPE2_PATIENT_STUDY:
        if keyword not in header:
            setattr(header, keyword, "")
    return header


@dataclass(frozen=True)
class PlacedHeatmap:
    """A heatmap checked against its finding and its source image (and frame)."""

    finding: Finding
    source: Dataset
    frame: int | None
    values: np.ndarray  # float32 in [0, 1], rows x columns of the source


def placed_heatmaps(analysis: AnalysisResult, sources: Sequence[Dataset]) -> list[PlacedHeatmap]:
    """Every heatmap of ``analysis`` with its finding and source, validated; ValueError if not."""
    by_uid = index_sources(sources)
    findings = {finding.label: finding for finding in analysis.findings}
    placed = []
    for index, heatmap in enumerate(analysis.heatmaps):
        where = f"analysis.heatmaps[{index}]"
        finding = findings.get(heatmap.label)
        if finding is None:
            raise ValueError(f"{where} has label {heatmap.label!r}, which no finding has")
        source = source_for(heatmap.image, by_uid, where)
        frame = check_frame(heatmap.image, source, where)
        values = np.asarray(heatmap.values)
        expected = (int(source.Rows), int(source.Columns))
        if values.ndim != 2 or values.shape != expected:
            raise ValueError(f"{where} has shape {values.shape}, its image is {expected}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{where} contains values that are not finite")
        if values.min() < -1e-6 or values.max() > 1 + 1e-6:
            raise ValueError(f"{where} values must lie in [0, 1]")
        placed.append(
            PlacedHeatmap(
                finding=finding,
                source=source,
                frame=frame,
                values=np.clip(values, 0.0, 1.0).astype(np.float32),
            )
        )
    return placed


def by_series(placed: Sequence[PlacedHeatmap]) -> dict[str, list[PlacedHeatmap]]:
    """Heatmaps grouped by the series of their source image, in first-seen order."""
    groups: dict[str, list[PlacedHeatmap]] = {}
    for item in placed:
        groups.setdefault(str(item.source.SeriesInstanceUID), []).append(item)
    return groups
