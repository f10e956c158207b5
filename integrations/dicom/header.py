"""What the node needs to know about a received instance, read from its encoded bytes (pure).

One pass over the encoding checks that every element is whole (see ``framing``) and picks up
the identifying top-level attributes; nothing else is decoded, and the stored file keeps the
bytes exactly as received. Text in character-set dependent VRs (PN, LO, SH) is decoded with
the dataset's Specific Character Set.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.valuerep import PersonName

from integrations.dicom.framing import check_dataset_encoding, sequence_items
from integrations.dicom.uids import validate_uid
from integrations.errors import DatasetError, InvalidUIDError

PREAMBLE_AND_PREFIX = 132
TRANSFER_SYNTAX_UID = 0x00020010

SPECIFIC_CHARACTER_SET = 0x00080005
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
STUDY_DATE = 0x00080020
STUDY_TIME = 0x00080030
ACCESSION_NUMBER = 0x00080050
MODALITY = 0x00080060
REFERRING_PHYSICIAN_NAME = 0x00080090
STUDY_DESCRIPTION = 0x00081030
SERIES_DESCRIPTION = 0x0008103E
STATION_NAME = 0x00081010
ANATOMIC_REGION_SEQUENCE = 0x00082218
CODE_VALUE = 0x00080100
CODING_SCHEME_DESIGNATOR = 0x00080102
CODE_MEANING = 0x00080104
LONG_CODE_VALUE = 0x00080119
PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
ISSUER_OF_PATIENT_ID = 0x00100021
PATIENT_BIRTH_DATE = 0x00100030
PATIENT_SEX = 0x00100040
BODY_PART_EXAMINED = 0x00180015
PROTOCOL_NAME = 0x00181030
VIEW_POSITION = 0x00185101
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
SERIES_NUMBER = 0x00200011
INSTANCE_NUMBER = 0x00200013
LATERALITY = 0x00200060
FRAME_ANATOMY_SEQUENCE = 0x00209071
SHARED_FUNCTIONAL_GROUPS_SEQUENCE = 0x52009229
REQUEST_ATTRIBUTES_SEQUENCE = 0x00400275
REQUESTED_PROCEDURE_PRIORITY = 0x00401003
NUMBER_OF_FRAMES = 0x00280008
CODE_ELEMENTS = frozenset({CODE_VALUE, CODING_SCHEME_DESIGNATOR, CODE_MEANING, LONG_CODE_VALUE})

WANTED = frozenset(
    {
        SPECIFIC_CHARACTER_SET,
        SOP_CLASS_UID,
        SOP_INSTANCE_UID,
        STUDY_DATE,
        STUDY_TIME,
        ACCESSION_NUMBER,
        MODALITY,
        REFERRING_PHYSICIAN_NAME,
        STUDY_DESCRIPTION,
        SERIES_DESCRIPTION,
        PATIENT_NAME,
        PATIENT_ID,
        ISSUER_OF_PATIENT_ID,
        PATIENT_BIRTH_DATE,
        PATIENT_SEX,
        BODY_PART_EXAMINED,
        PROTOCOL_NAME,
        VIEW_POSITION,
        STUDY_INSTANCE_UID,
        SERIES_INSTANCE_UID,
        SERIES_NUMBER,
        INSTANCE_NUMBER,
        LATERALITY,
        STATION_NAME,
        ANATOMIC_REGION_SEQUENCE,
        # Enhanced (multi-frame) objects put Anatomic Region Sequence in the Frame Anatomy
        # functional group; only the shared groups are read (one small item), never per-frame.
        SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        # the order an image was acquired for: top level, or in the Request Attributes
        REQUESTED_PROCEDURE_PRIORITY,
        REQUEST_ATTRIBUTES_SEQUENCE,
        NUMBER_OF_FRAMES,  # how much work a study is: its dispatch lane
    }
)

# A coded anatomic region as the header gives it: (coding scheme, code value, code meaning).
AnatomicRegion = tuple[str, str, str]


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
    # (0040,1003), top level or in the Request Attributes Sequence: STAT, HIGH, ROUTINE...
    requested_procedure_priority: str = ""
    station_name: str = ""
    anatomic_regions: tuple[AnatomicRegion, ...] = ()
    number_of_frames: int | None = None  # (0028,0008); None: a single-frame object


def dataset_offset(file_bytes: bytes) -> int:
    """Byte offset of the dataset after the preamble and File Meta Information group."""
    if file_bytes[128:132] != b"DICM":
        raise DatasetError("not in DICOM File Format (no DICM prefix)")
    # (0002,0000) File Meta Information Group Length, explicit VR little endian, UL.
    if file_bytes[132:138] != b"\x02\x00\x00\x00UL":
        raise DatasetError("File Meta Information does not start with its group length")
    if len(file_bytes) < PREAMBLE_AND_PREFIX + 12:
        raise DatasetError("File Meta Information group length is truncated")
    (group_length,) = struct.unpack_from("<I", file_bytes, 140)
    start = PREAMBLE_AND_PREFIX + 12 + group_length
    if start > len(file_bytes):
        raise DatasetError(
            f"File Meta Information declares {group_length} bytes, more than the file holds"
        )
    return start


def read_header(file_bytes: bytes) -> InstanceHeader:
    """Parse and validate a file in DICOM File Format (preamble + file meta + dataset)."""
    start = dataset_offset(file_bytes)
    meta = check_dataset_encoding(
        file_bytes[PREAMBLE_AND_PREFIX:start],
        "1.2.840.10008.1.2.1",
        frozenset({TRANSFER_SYNTAX_UID}),
    )
    transfer_syntax_uid = _ascii(meta.get(TRANSFER_SYNTAX_UID, b""))
    return parse_dataset(file_bytes[start:], transfer_syntax_uid)


def parse_dataset(dataset_bytes: bytes, transfer_syntax_uid: str) -> InstanceHeader:
    """Check an encoded dataset (no file meta) and read its identifying attributes.

    Raises :class:`DatasetError` when the bytes are malformed or truncated, or a UID is not
    conformant; the message says what is wrong.
    """
    try:
        transfer_syntax_uid = validate_uid(transfer_syntax_uid, "Transfer Syntax UID")
    except InvalidUIDError as error:
        raise DatasetError(str(error)) from None
    values = check_dataset_encoding(dataset_bytes, transfer_syntax_uid, WANTED)
    encodings = _encodings(_ascii(values.get(SPECIFIC_CHARACTER_SET, b"")))

    def text(tag: int) -> str:
        return _ascii(values.get(tag, b""))

    def decoded(tag: int) -> str:
        raw = values.get(tag, b"")
        return decode_bytes(raw, encodings, set()).strip(" \x00") if raw else ""

    def person_name(tag: int) -> str:
        raw = values.get(tag, b"").rstrip(b" \x00")
        return str(PersonName(raw, encodings=encodings)).strip() if raw else ""

    def integer(tag: int) -> int | None:
        try:
            return int(text(tag).split("\\")[0]) if text(tag) else None
        except ValueError:
            return None

    def uid(tag: int, what: str) -> str:
        try:
            return validate_uid(text(tag), what)
        except InvalidUIDError as error:
            raise DatasetError(str(error)) from None

    return InstanceHeader(
        study_instance_uid=uid(STUDY_INSTANCE_UID, "Study Instance UID"),
        series_instance_uid=uid(SERIES_INSTANCE_UID, "Series Instance UID"),
        sop_instance_uid=uid(SOP_INSTANCE_UID, "SOP Instance UID"),
        sop_class_uid=uid(SOP_CLASS_UID, "SOP Class UID"),
        transfer_syntax_uid=transfer_syntax_uid,
        patient_id=decoded(PATIENT_ID),
        issuer_of_patient_id=decoded(ISSUER_OF_PATIENT_ID),
        patient_name=person_name(PATIENT_NAME),
        patient_birth_date=text(PATIENT_BIRTH_DATE),
        patient_sex=text(PATIENT_SEX).upper(),
        accession_number=decoded(ACCESSION_NUMBER),
        study_date=text(STUDY_DATE),
        study_time=text(STUDY_TIME),
        study_description=decoded(STUDY_DESCRIPTION),
        referring_physician_name=person_name(REFERRING_PHYSICIAN_NAME),
        modality=text(MODALITY).upper(),
        body_part_examined=text(BODY_PART_EXAMINED).upper(),
        series_description=decoded(SERIES_DESCRIPTION),
        protocol_name=decoded(PROTOCOL_NAME),
        series_number=integer(SERIES_NUMBER),
        instance_number=integer(INSTANCE_NUMBER),
        laterality=text(LATERALITY).upper(),
        view_position=text(VIEW_POSITION).upper(),
        station_name=decoded(STATION_NAME),
        anatomic_regions=_anatomic_regions(values, transfer_syntax_uid),
        requested_procedure_priority=_requested_procedure_priority(values, transfer_syntax_uid),
        number_of_frames=integer(NUMBER_OF_FRAMES),
    )


def _encodings(specific_character_set: str) -> list[str]:
    """Python codecs for the Specific Character Set; the default repertoire when the value
    is not one a codec can be looked up for (pydicom raises ValueError on, e.g., an embedded
    NUL: found by tests/faults/test_fuzz_ingest.py). The bytes are kept as received."""
    terms = [part.strip() for part in specific_character_set.split("\\")] or [""]
    try:
        return list(convert_encodings(terms))
    except (ValueError, LookupError):
        return list(convert_encodings([""]))


def _requested_procedure_priority(values: dict[int, bytes], transfer_syntax_uid: str) -> str:
    """(0040,1003) at the top level, else from the first Request Attributes item giving it."""
    raw = values.get(REQUESTED_PROCEDURE_PRIORITY, b"")
    if not raw:
        wanted = frozenset({REQUESTED_PROCEDURE_PRIORITY})
        items = _items(values.get(REQUEST_ATTRIBUTES_SEQUENCE), transfer_syntax_uid, wanted)
        raw = next(
            (
                item[REQUESTED_PROCEDURE_PRIORITY]
                for item in items
                if item.get(REQUESTED_PROCEDURE_PRIORITY)
            ),
            b"",
        )
    return _ascii(raw).upper()


def _anatomic_regions(
    values: dict[int, bytes], transfer_syntax_uid: str
) -> tuple[AnatomicRegion, ...]:
    """Anatomic Region Sequence codes, top level first, then the shared Frame Anatomy group."""
    sequences = [values.get(ANATOMIC_REGION_SEQUENCE, b"")]
    for shared in _items(values.get(SHARED_FUNCTIONAL_GROUPS_SEQUENCE), transfer_syntax_uid):
        for anatomy in _items(shared.get(FRAME_ANATOMY_SEQUENCE), transfer_syntax_uid):
            sequences.append(anatomy.get(ANATOMIC_REGION_SEQUENCE, b""))
    regions: list[AnatomicRegion] = []
    for raw in sequences:
        for item in _items(raw, transfer_syntax_uid, CODE_ELEMENTS):
            value = _ascii(item.get(CODE_VALUE) or item.get(LONG_CODE_VALUE) or b"")
            if value:
                scheme = _ascii(item.get(CODING_SCHEME_DESIGNATOR, b"")).upper()
                meaning = item.get(CODE_MEANING, b"").decode("utf-8", errors="replace")
                regions.append((scheme, value, meaning.strip(" \x00")))
    return tuple(dict.fromkeys(regions))


def _items(
    raw: bytes | None,
    transfer_syntax_uid: str,
    wanted: frozenset[int] = frozenset({FRAME_ANATOMY_SEQUENCE, ANATOMIC_REGION_SEQUENCE}),
) -> list[dict[int, bytes]]:
    if not raw:
        return []
    try:
        return sequence_items(raw, transfer_syntax_uid, wanted)
    except DatasetError:  # evidence for routing only: a sequence we cannot read gives none
        return []


def _ascii(raw: bytes) -> str:
    return raw.decode("ascii", errors="replace").strip(" \x00")
