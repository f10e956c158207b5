import io
import struct
import zlib

import pytest
from pydicom import Dataset
from pydicom.encaps import encapsulate
from pydicom.filereader import data_element_generator
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from integrations.dicom.framing import check_dataset_encoding
from integrations.dicom.header import dataset_offset, read_header
from integrations.errors import DatasetError
from tests.dicom_samples import make_instance


def encode(ds: Dataset, syntax: str) -> bytes:
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def with_sequence(ds: Dataset) -> Dataset:
    item = Dataset()
    item.CodeValue = "121071"
    item.CodingSchemeDesignator = "DCM"
    nested = Dataset()
    nested.CodeMeaning = "x"
    item.ConceptCodeSequence = Sequence([nested])
    ds.ProcedureCodeSequence = Sequence([item, Dataset()])
    return ds


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
)
def test_whole_datasets_pass_and_every_truncation_fails(syntax):
    ds = with_sequence(make_instance("framing", size=8))
    data = encode(ds, syntax)
    read_header(data)  # whole: accepted
    start = dataset_offset(data)
    body = data[start:]
    # A cut exactly between two top-level elements is a valid, shorter dataset; a cut
    # anywhere inside an element is truncation and must be refused.
    boundaries = {
        element.value_tell + element.length
        for element in data_element_generator(
            io.BytesIO(body), syntax == ImplicitVRLittleEndian, syntax != ExplicitVRBigEndian
        )
    }
    refused = 0
    for cut in range(1, len(body)):
        if cut in boundaries:
            check_dataset_encoding(body[:cut], syntax)
        else:
            with pytest.raises(DatasetError):
                check_dataset_encoding(body[:cut], syntax)
            refused += 1
    assert refused > len(body) * 0.9


def test_undefined_length_sequences_and_encapsulated_pixel_data():
    ds = with_sequence(make_instance("encaps", size=8))
    ds.PixelData = encapsulate(
        [b"\xff\xd8" + b"\x00" * 30 + b"\xff\xd9", b"\xff\xd8" + b"\x01" * 10 + b"\xff\xd9"]
    )
    ds["PixelData"].VR = "OB"
    ds.ProcedureCodeSequence.is_undefined_length = True
    for item in ds.ProcedureCodeSequence:
        item.is_undefined_length_sequence_item = True
    data = encode(ds, JPEGBaseline8Bit)
    read_header(data)
    start = dataset_offset(data)
    with pytest.raises(DatasetError, match="truncated"):
        check_dataset_encoding(data[start:-12], JPEGBaseline8Bit)


def test_deflated_dataset():
    data = encode(make_instance("deflate", size=8), DeflatedExplicitVRLittleEndian)
    read_header(data)
    start = dataset_offset(data)
    with pytest.raises(DatasetError):
        check_dataset_encoding(zlib.compress(b"garbage")[2:], DeflatedExplicitVRLittleEndian)
    assert start > 0


def test_element_length_larger_than_data_is_named():
    element = struct.pack("<HH2sH", 0x0010, 0x0010, b"PN", 200) + b"DOE^JANE"
    with pytest.raises(DatasetError, match=r"\(0010,0010\) declares 200 bytes"):
        check_dataset_encoding(element, ExplicitVRLittleEndian)


def test_not_dicom_file_format():
    with pytest.raises(DatasetError):
        read_header(b"\x00" * 200)


def test_header_fields_are_read_and_uids_validated():
    ds = make_instance("hdr", modality="CR", body_part="CHEST")
    ds.PatientName = "Müller^Jürgen"
    ds.SpecificCharacterSet = "ISO_IR 100"
    header = read_header(encode(ds, ExplicitVRLittleEndian))
    assert header.modality == "CR" and header.body_part_examined == "CHEST"
    assert header.patient_name == "Müller^Jürgen"
    assert header.study_instance_uid == ds.StudyInstanceUID
    ds.SeriesInstanceUID = "1.2.3.4"
    ds["SeriesInstanceUID"].value = "1.2.abc"
    with pytest.raises(DatasetError, match="Series Instance UID"):
        read_header(encode(ds, ExplicitVRLittleEndian))
