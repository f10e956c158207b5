"""The node's own C-STORE response encoding gives pynetdicom's bytes exactly (pure)."""

from __future__ import annotations

from io import BytesIO

import pytest
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE

from integrations.dicom.reactor import encode_store_response


def pynetdicom_encoding(primitive: C_STORE) -> bytes:
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    fragments = list(message.encode_msg(1, 0))
    assert len(fragments) == 1
    ((_, data),) = fragments[0].presentation_data_value_list
    assert data[:1] == b"\x03"
    return bytes(data[1:])


def response(**fields: object) -> C_STORE:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = 7
    primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # even length
    primitive.AffectedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"  # odd length
    primitive.Status = 0x0000
    for name, value in fields.items():
        setattr(primitive, name, value)
    return primitive


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"Status": 0xB000, "MessageIDBeingRespondedTo": 65535},
        {"AffectedSOPClassUID": "1.2.3", "AffectedSOPInstanceUID": "1.2.34"},
        {"AffectedSOPInstanceUID": "2.25." + "9" * 59},  # 64 characters
    ],
)
def test_store_response_bytes_are_pynetdicoms(fields: dict[str, object]) -> None:
    primitive = response(**fields)
    assert encode_store_response(primitive) == pynetdicom_encoding(primitive)


def test_responses_with_more_than_a_status_are_left_to_pynetdicom() -> None:
    assert encode_store_response(response(Status=0xA700, ErrorComment="disk full")) is None
    assert encode_store_response(response(Status=0xC000, OffendingElement=[0x00080018])) is None
    request = response()
    request.MessageIDBeingRespondedTo = None
    request.MessageID = 3
    assert encode_store_response(request) is None


def test_the_bytes_decode_as_a_c_store_response() -> None:
    from pynetdicom.dsutils import decode

    encoded = encode_store_response(response())
    assert encoded is not None
    command = decode(BytesIO(encoded), True, True)
    assert command.CommandField == 0x8001
    assert command.Status == 0
    assert command.MessageIDBeingRespondedTo == 7
    assert command.AffectedSOPInstanceUID == "1.2.826.0.1.3680043.8.498.1"
    assert command.CommandGroupLength == len(encoded) - 12
