"""ACKs pacsflow returns are valid HL7 in the message's version; ACKs it receives are read."""

from __future__ import annotations

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_segments

from integrations.hl7.ack import (
    AcknowledgmentCode,
    AckParseError,
    ErrorCondition,
    Hl7Problem,
    build_ack,
    parse_ack,
)
from integrations.hl7.adt import read_header
from tests.emr_samples import adt


def ack_for(version: str, code: AcknowledgmentCode, problem: Hl7Problem | None = None) -> str:
    header = read_header(adt("A01", "CTRL-42", version=version))
    return build_ack(
        header,
        code,
        control_id="ACK0001",
        timestamp="20260301101010+0100",
        sending_application="PACSFLOW",
        sending_facility="RAD",
        problem=problem,
    )


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"])
def test_error_ack_is_strictly_valid_in_the_message_version(version: str) -> None:
    problem = Hl7Problem(ErrorCondition.DATA_TYPE_ERROR, "PID-7 '1961' is bad", "PID", 1, 7)
    text = ack_for(version, AcknowledgmentCode.APPLICATION_ERROR, problem)
    # hl7apy cannot tell the structure of a v2.3 ACK from MSH-9, so it is given explicitly
    message = Message("ACK", version=version, validation_level=VALIDATION_LEVEL.STRICT)
    for segment in parse_segments(
        text.strip("\r"), version=version, validation_level=VALIDATION_LEVEL.STRICT
    ):
        setattr(message, segment.name.lower(), segment)
    assert message.validate()
    assert message.msh.msh_12.to_er7() == version
    assert message.msa.msa_1.to_er7() == "AE"
    assert message.msa.msa_2.to_er7() == "CTRL-42"
    assert message.msh.msh_5.to_er7() == "ADTSYS"  # answered to the sender
    reply = parse_ack(text)
    assert reply.code is AcknowledgmentCode.APPLICATION_ERROR
    assert reply.message_control_id == "CTRL-42"
    assert "PID-7 '1961' is bad" in reply.text and "Data type error" in reply.text


def test_err_location_fields_v251() -> None:
    problem = Hl7Problem(ErrorCondition.TABLE_VALUE_NOT_FOUND, "bad sex", "PID", 1, 8)
    err = ack_for("2.5.1", AcknowledgmentCode.APPLICATION_ERROR, problem).split("\r")[2]
    assert err == "ERR||PID^1^8^1|103^Table value not found^HL70357|E||||bad sex"


def test_accept_ack_has_no_err() -> None:
    text = ack_for("2.5.1", AcknowledgmentCode.APPLICATION_ACCEPT)
    assert [line[:3] for line in text.strip("\r").split("\r")] == ["MSH", "MSA"]
    assert parse_ack(text).accepted


def test_ack_without_a_readable_header_still_parses() -> None:
    text = build_ack(
        None,
        AcknowledgmentCode.APPLICATION_REJECT,
        control_id="X",
        timestamp="20260301",
        sending_application="PACSFLOW",
        sending_facility="RAD",
        problem=Hl7Problem(ErrorCondition.APPLICATION_INTERNAL_ERROR, "cannot store"),
    )
    reply = parse_ack(text)
    assert reply.code.rejected and reply.message_control_id == ""


def test_reads_an_ack_built_by_hl7apy() -> None:
    ack = Message("ACK", version="2.5.1")
    ack.msh.msh_3 = "EMR"
    ack.msh.msh_9 = "ACK^R01^ACK"
    ack.msh.msh_10 = "9"
    ack.msh.msh_11 = "P"
    ack.msa.msa_1 = "AR"
    ack.msa.msa_2 = "123456"
    ack.msa.msa_3 = "unknown patient"
    reply = parse_ack(ack.to_er7())
    assert reply.code.rejected and reply.message_control_id == "123456"
    assert reply.text == "unknown patient"


@pytest.mark.parametrize("text", ["", "garbage", "MSH|^~\\&|A\rPID|1\r", "MSH|^~\\&|A\rMSA|ZZ|1\r"])
def test_answers_that_are_not_acks_are_refused(text: str) -> None:
    with pytest.raises(AckParseError):
        parse_ack(text)


def test_reused_accept_acks_carry_each_message_own_ids() -> None:
    def accept(control_id: str, answer_id: str, event: str = "A01") -> list[str]:
        header = read_header(adt(event, control_id))
        text = build_ack(
            header,
            AcknowledgmentCode.APPLICATION_ACCEPT,
            control_id=answer_id,
            timestamp="20260301101010",
            sending_application="PACSFLOW",
            sending_facility="RAD",
        )
        return text.strip("\r").split("\r")

    first = accept("CTRL-1", "ACK1")
    error = ack_for(
        "2.5.1",
        AcknowledgmentCode.APPLICATION_ERROR,
        Hl7Problem(ErrorCondition.DATA_TYPE_ERROR, "bad", "PID", 1, 7),
    )
    second = accept("CTRL-2", "ACK2")
    other_event = accept("CTRL-3", "ACK3", "A08")
    assert first[1] == "MSA|AA|CTRL-1" and second[1] == "MSA|AA|CTRL-2"
    assert first[0].split("|")[9] == "ACK1" and second[0].split("|")[9] == "ACK2"
    assert first[0].replace("ACK1", "ACK2") == second[0]
    assert len(second) == 2 and "ERR" in error  # the error ACK left nothing behind
    assert other_event[0].split("|")[8] == "ACK^A08^ACK" and other_event[1] == "MSA|AA|CTRL-3"
