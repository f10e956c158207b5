"""Fuzzing the ingest parse path: what the node does with the bytes of a received C-STORE
(property test).

The C-STORE handler (``DicomNode._on_store``) checks the Affected SOP Instance UID, walks and
reads the encoded dataset (:func:`integrations.dicom.header.parse_dataset`), builds the file
meta, writes the instance into the spool and records its header. This harness drives that
same chain, without the database row, on mutated valid datasets in every uncompressed
transfer syntax (with sequences, encapsulated pixel data, deflate), on raw bytes, and on the
spooled file as reconciliation reads it back (:func:`integrations.dicom.header.read_header`).

Documented exceptions, the only ones allowed:

* :class:`~integrations.errors.DatasetError` from ``parse_dataset`` / ``read_header``
  (the node answers 0xC000 "cannot understand");
* :class:`~integrations.errors.InvalidUIDError` from ``validate_uid`` on the request's
  Affected SOP Instance UID (also 0xC000).

Whatever parses must stay inside the spool, read back from the spooled file as the same
header, and hash to the same content.
"""

from __future__ import annotations

import contextlib
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from integrations.dicom.file_meta import encode_file_meta
from integrations.dicom.header import InstanceHeader, dataset_offset, parse_dataset, read_header
from integrations.dicom.spool import Spool, content_sha256
from integrations.dicom.uids import validate_uid
from integrations.errors import DatasetError, InvalidUIDError
from tests.dicom_samples import make_instance
from tests.faults.fuzzing import fuzz_settings, mutated

DOCUMENTED = (DatasetError, InvalidUIDError)
TRANSFER_SYNTAXES = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
]


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _rich_instance(number: int) -> Dataset:
    """Everything the header reads: nested sequences, text in a character set, priority."""
    ds = make_instance("fuzz", number=number, size=8, patient_name="Müller^Jürgen")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.StudyDescription = "Thorax ä"
    ds.AnatomicRegionSequence = Sequence([_code("51185008", "SCT", "Chest")])
    request = Dataset()
    request.RequestedProcedurePriority = "STAT"
    ds.RequestAttributesSequence = Sequence([request])
    anatomy = Dataset()
    anatomy.AnatomicRegionSequence = Sequence([_code("T-D3000", "SRT", "Chest")])
    shared = Dataset()
    shared.FrameAnatomySequence = Sequence([anatomy])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    return ds


def encoded(ds: Dataset, transfer_syntax_uid: str) -> bytes:
    """The dataset as a C-STORE carries it (no file meta) in ``transfer_syntax_uid``."""
    ds = ds.copy()
    if transfer_syntax_uid == JPEGBaseline8Bit:
        ds.PixelData = encapsulate([b"\xff\xd8fragment-one\xff\xd9", b"\xff\xd8two\xff\xd9"])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    buffer = DicomBytesIO()
    buffer.is_implicit_VR = transfer_syntax_uid == ImplicitVRLittleEndian
    buffer.is_little_endian = transfer_syntax_uid != ExplicitVRBigEndian
    write_dataset(buffer, ds)
    data = buffer.getvalue()
    if transfer_syntax_uid == DeflatedExplicitVRLittleEndian:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = compressor.compress(data) + compressor.flush()
    return data


SEEDS: dict[str, list[bytes]] = {
    syntax: [encoded(make_instance("fuzz", size=4), syntax), encoded(_rich_instance(2), syntax)]
    for syntax in TRANSFER_SYNTAXES
}
ALL_SEEDS = [seed for seeds in SEEDS.values() for seed in seeds]
CHARSET_WITH_NUL = SEEDS[ExplicitVRLittleEndian][1].replace(b"ISO_IR 100", b"\x00\x01\x00O_IR 100")


def test_the_seeds_parse(tmp_path: Path) -> None:
    """The harness mutates datasets the node accepts: every seed is stored and read back."""
    spool = Spool(tmp_path / "spool", fsync=False)
    for syntax, seeds in SEEDS.items():
        for data in seeds:
            header = _ingest(spool, data, syntax, "MODALITY")
            assert header is not None, syntax
    rich = _ingest(spool, SEEDS[ExplicitVRLittleEndian][1], ExplicitVRLittleEndian, "MODALITY")
    assert rich is not None
    assert rich.patient_name == "Müller^Jürgen"
    assert rich.requested_procedure_priority == "STAT"
    assert ("SCT", "51185008", "Chest") in rich.anatomic_regions


def _ingest(
    spool: Spool, data: bytes, transfer_syntax_uid: str, calling: str, affected: str | None = None
) -> InstanceHeader | None:
    """The node's C-STORE path without the database: None when refused (documented error)."""
    try:
        header = parse_dataset(data, transfer_syntax_uid)
        validate_uid(header.sop_instance_uid if affected is None else affected, "Affected UID")
    except DOCUMENTED:
        return None
    for uid in (header.study_instance_uid, header.series_instance_uid, header.sop_instance_uid):
        assert validate_uid(uid, "UID") == uid
    meta = encode_file_meta(
        header.sop_class_uid, header.sop_instance_uid, header.transfer_syntax_uid, calling
    )
    spooled = spool.write(
        header.study_instance_uid,
        header.series_instance_uid,
        header.sop_instance_uid,
        meta,
        data,
        replace=True,
    )
    assert spooled.path.resolve().is_relative_to(spool.root.resolve())
    file_bytes = spooled.path.read_bytes()
    assert file_bytes == meta + data
    # Reconciliation after a crash reads the spooled file: the same instance comes back.
    assert read_header(file_bytes) == header
    assert spooled.content_sha256 == content_sha256(data)
    return header


@pytest.fixture(scope="module")
def spool() -> Spool:
    with tempfile.TemporaryDirectory(prefix="pacsflow-fuzz-spool-") as root:
        yield Spool(Path(root), fsync=False)


@fuzz_settings(examples=400)
@given(
    data=mutated(ALL_SEEDS),
    transfer_syntax_uid=st.one_of(
        st.sampled_from(TRANSFER_SYNTAXES), st.text(max_size=70), st.just("1.2.840.10008.1.2.4.50")
    ),
    calling=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16),
)
@example(data=b"", transfer_syntax_uid=ExplicitVRLittleEndian, calling="")
@example(data=b"\x00" * 8, transfer_syntax_uid=ImplicitVRLittleEndian, calling="A")
@example(data=b"\xff\xff\xff\xff", transfer_syntax_uid=DeflatedExplicitVRLittleEndian, calling="A")
# Found by this harness: a Specific Character Set with an embedded NUL made pydicom raise
# ValueError out of the C-STORE handler; the default repertoire is used instead.
@example(data=CHARSET_WITH_NUL, transfer_syntax_uid=ExplicitVRLittleEndian, calling="A")
def test_a_received_dataset_is_stored_or_refused_with_a_documented_error(
    spool: Spool, data: bytes, transfer_syntax_uid: str, calling: str
) -> None:
    _ingest(spool, data, transfer_syntax_uid, calling)


@fuzz_settings(examples=150)
@given(data=st.binary(max_size=512), transfer_syntax_uid=st.sampled_from(TRANSFER_SYNTAXES))
def test_random_bytes_are_refused_or_stored(
    spool: Spool, data: bytes, transfer_syntax_uid: str
) -> None:
    _ingest(spool, data, transfer_syntax_uid, "MODALITY")


@fuzz_settings(examples=200)
@given(
    data=mutated(
        [
            encode_file_meta("1.2.3", "1.2.3.4", syntax) + SEEDS[syntax][1]
            for syntax in TRANSFER_SYNTAXES
        ]
    )
)
# Found by this harness: a file cut inside its File Meta group length raised struct.error,
# which stopped reconciliation (and the node's start) instead of leaving the file in place.
@example(data=bytes(128) + b"DICM\x02\x00\x00\x00UL")
@example(data=bytes(128) + b"DICM\x02\x00\x00\x00UL\x04\x00\xff\xff\xff\xff")
def test_a_spooled_file_reads_back_or_is_refused(data: bytes) -> None:
    """What reconciliation after a crash does with a file it finds in the spool."""
    with contextlib.suppress(DatasetError):
        read_header(data)
    with contextlib.suppress(DatasetError):
        dataset_offset(data)  # what the content hash of a spooled file starts from


@fuzz_settings(examples=200)
@given(uid=st.text(max_size=80))
@example(uid="../../etc")
@example(uid="1.2." + "3" * 62)
@example(uid="0\x85")  # found by this harness: NEL was stripped as whitespace, "0" accepted
@example(uid="1.2.3\n")
def test_the_affected_sop_instance_uid_is_valid_or_refused(uid: str) -> None:
    """The request's UID names a path in the spool: anything not a conformant UID is refused."""
    try:
        checked = validate_uid(uid, "Affected SOP Instance UID")
    except InvalidUIDError:
        return
    assert checked == uid.rstrip("\x00").strip(" ")  # DICOM padding only
    assert (
        len(checked) <= 64
        and set(checked) <= set("0123456789.")
        and ".." not in checked
        and set(uid) <= set("0123456789.")
        and ".." not in uid
    )
