"""What the node needs to know about a received instance, read from its encoded bytes (pure).

Only the header is parsed (``stop_before_pixels``) and only the attributes listed here; the
stored file keeps the bytes exactly as received.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from integrations.dicom.framing import check_dataset_encoding
from integrations.dicom.uids import validate_uid
from integrations.errors import DatasetError, InvalidUIDError

PREAMBLE_AND_PREFIX = 132
HEADER_KEYWORDS = (
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "Modality",
    "ReferringPhysicianName",
    "StudyDescription",
    "SeriesDescription",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "BodyPartExamined",
    "ProtocolName",
    "ViewPosition",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "InstanceNumber",
    "Laterality",
)


@dataclass(frozen=True)
class InstanceHeader:
    """The identifying attributes of one instance, as text."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    accession_number: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    referring_physician_name: str = ""
    modality: str = ""
    body_part_examined: str = ""
    series_description: str = ""
    protocol_name: str = ""
    series_number: int | None = None
    instance_number: int | None = None
    laterality: str = ""
    view_position: str = ""


def dataset_offset(file_bytes: bytes) -> int:
    """Byte offset of the dataset after the preamble and File Meta Information group."""
    if file_bytes[128:132] != b"DICM":
        raise DatasetError("not in DICOM File Format (no DICM prefix)")
    # (0002,0000) File Meta Information Group Length, explicit VR little endian, UL.
    if file_bytes[132:138] != b"\x02\x00\x00\x00UL":
        raise DatasetError("File Meta Information does not start with its group length")
    (group_length,) = struct.unpack_from("<I", file_bytes, 140)
    return PREAMBLE_AND_PREFIX + 12 + group_length


def read_header(file_bytes: bytes, *, check_encoding: bool = True) -> InstanceHeader:
    """Parse and validate a received instance (preamble + file meta + dataset).

    Raises :class:`DatasetError` when the bytes are malformed or truncated, or a UID is not
    conformant; the message says what is wrong.
    """
    try:
        dataset = dcmread(
            io.BytesIO(file_bytes), stop_before_pixels=True, specific_tags=list(HEADER_KEYWORDS)
        )
    except (InvalidDicomError, EOFError, struct.error, ValueError, KeyError) as error:
        raise DatasetError(f"cannot parse dataset: {error}") from None
    meta = dataset.file_meta
    transfer_syntax_uid = str(meta.get("TransferSyntaxUID", ""))
    if check_encoding:
        check_dataset_encoding(file_bytes[dataset_offset(file_bytes) :], transfer_syntax_uid)

    def text(keyword: str) -> str:
        value = dataset.get(keyword)
        return "" if value is None else str(value).strip()

    def number(keyword: str) -> int | None:
        value = dataset.get(keyword)
        try:
            return None if value in (None, "") else int(value)
        except (TypeError, ValueError):
            return None

    try:
        return InstanceHeader(
            study_instance_uid=validate_uid(dataset.get("StudyInstanceUID"), "Study Instance UID"),
            series_instance_uid=validate_uid(
                dataset.get("SeriesInstanceUID"), "Series Instance UID"
            ),
            sop_instance_uid=validate_uid(dataset.get("SOPInstanceUID"), "SOP Instance UID"),
            sop_class_uid=validate_uid(dataset.get("SOPClassUID"), "SOP Class UID"),
            transfer_syntax_uid=validate_uid(transfer_syntax_uid, "Transfer Syntax UID"),
            patient_id=text("PatientID"),
            issuer_of_patient_id=text("IssuerOfPatientID"),
            patient_name=text("PatientName"),
            patient_birth_date=text("PatientBirthDate"),
            patient_sex=text("PatientSex"),
            accession_number=text("AccessionNumber"),
            study_date=text("StudyDate"),
            study_time=text("StudyTime"),
            study_description=text("StudyDescription"),
            referring_physician_name=text("ReferringPhysicianName"),
            modality=text("Modality").upper(),
            body_part_examined=text("BodyPartExamined").upper(),
            series_description=text("SeriesDescription"),
            protocol_name=text("ProtocolName"),
            series_number=number("SeriesNumber"),
            instance_number=number("InstanceNumber"),
            laterality=text("Laterality"),
            view_position=text("ViewPosition").upper(),
        )
    except InvalidUIDError as error:
        raise DatasetError(str(error)) from None
