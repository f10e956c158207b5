"""Fuzzing the HL7 ADT parser as the listener uses it (property test).

The listener (``AdtListener._handle``) decodes the received bytes in their MSH-18 character
set, reads MSH, parses the ADT message against its declared version, picks the MRN and
builds the ACK. This harness drives those public entry points (``decode_message``,
``read_header``, ``parse_adt``, ``MrnRules.select_mrn``, ``build_ack``) the way the listener
calls them, on mutated ADT messages of every event pacsflow applies, and on raw bytes;
whatever parses them underneath (hl7apy, through ``integrations.hl7.model``) stays behind
these functions.

Documented exceptions, the only ones allowed:

* :class:`~integrations.hl7.charset.CharsetError` from ``decode_message`` (AE, MSH-18);
* :class:`~integrations.hl7.ack.Hl7MessageError` from ``read_header`` / ``parse_adt``
  (AE with the HL7 table 0357 condition).

Whatever happens, the ACK can be built and encoded in the message's character set: a peer
always gets an answer that names its control ID when MSH could be read.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from integrations.emr.identifiers import MrnRules
from integrations.hl7.ack import AcknowledgmentCode, ErrorCondition, Hl7MessageError, build_ack
from integrations.hl7.adt import parse_adt, read_header
from integrations.hl7.charset import CharsetError, decode_message, python_codec
from integrations.hl7.header import MessageHeader
from integrations.settings import Hl7Settings
from tests.emr_samples import adt
from tests.faults.fuzzing import fuzz_settings, mutated

SETTINGS = Hl7Settings()
RULES = MrnRules()
SEEDS = [
    adt("A01", "C1").encode("utf-8"),
    adt("A02", "C2", ward="WARD-B").encode("utf-8"),
    adt("A03", "C3", version="2.3").encode("utf-8"),
    adt("A08", "C4", version="2.4").encode("utf-8"),
    adt("A40", "C5", prior_mrn="999").encode("utf-8"),
    adt("A11", "C6", charset="8859/1", name="MULLER^JURGEN").encode("latin-1"),
    adt("A04", "C7", extra_segments=("NK1|1|DOE^JOHN|SPO", "AL1|1||^PENICILLIN")).encode("utf-8"),
]


def listen(raw: bytes) -> str:
    """What the listener does with one received message, up to the ACK it sends (no store)."""
    header: MessageHeader | None = None
    problem = None
    charset = ""
    msh = None
    try:
        decoded = decode_message(raw, SETTINGS.default_charset)
        charset, text, msh = decoded.charset, decoded.text, decoded.msh
    except CharsetError:
        text = raw.decode("latin-1")
        problem = ErrorCondition.DATA_TYPE_ERROR
    try:
        header = read_header(text, msh)
    except Hl7MessageError as error:
        problem = problem or error.problem.condition
    hl7_problem = None
    if problem is None:
        try:
            message = parse_adt(text, SETTINGS.accepted_versions, header)
            assert message.identifiers, "parse_adt returned a message without PID-3"
            assert all(identifier.id_number for identifier in message.identifiers)
            RULES.select_mrn(message.identifiers)
            assert message.header == header
        except Hl7MessageError as error:
            hl7_problem = error.problem
            assert str(error)  # the AE says what is wrong
    code = (
        AcknowledgmentCode.APPLICATION_ACCEPT
        if hl7_problem is None and problem is None
        else AcknowledgmentCode.APPLICATION_ERROR
    )
    ack = build_ack(
        header,
        code,
        control_id="ACK1",
        timestamp="20261201120000",
        sending_application=SETTINGS.sending_application,
        sending_facility=SETTINGS.sending_facility,
        problem=hl7_problem,
    )
    ack.encode(python_codec(charset) or "ascii", errors="replace")
    if header is not None and header.message_control_id:
        reply = read_header(ack)  # our own ACK reads back as ER7
        assert reply.message_code == "ACK"
    return ack


def test_the_seeds_are_accepted() -> None:
    for raw in SEEDS:
        assert "MSA|AA|" in listen(raw), raw[:80]


@fuzz_settings(examples=150)  # hl7apy parses: about 40 ms per example here
@given(raw=mutated(SEEDS))
@example(raw=b"")
@example(raw=b"MSH")
@example(raw=b"MSH|")
@example(raw=b"MSH|^~\\&")
@example(raw=b"MSH|^~\\&|" + b"|" * 20 + b"\rPID")
# Found by this harness (with hl7apy parsing): a malformed MSH made hl7apy raise IndexError
# or ValueError out of read_header, an AR "internal error" instead of the AE.
@example(raw=b"MSH\x01\x02\x00~\\&")
def test_a_received_adt_message_is_answered_with_a_documented_error_or_accepted(
    raw: bytes,
) -> None:
    listen(raw)


@fuzz_settings(examples=100)
@given(
    text=st.text(
        alphabet=st.one_of(st.sampled_from("|^~\\&\r\nMSHPIDPV1EVNMRG0123.AD"), st.characters()),
        max_size=300,
    )
)
def test_text_made_of_delimiters_and_segment_names_is_answered(text: str) -> None:
    listen(("MSH|^~\\&|" + text).encode("utf-8", errors="surrogatepass"))


@fuzz_settings(examples=80)
@given(
    field=st.sampled_from([3, 5, 7, 8, 18, 19, 44]),
    value=st.text(max_size=60),
)
def test_any_text_in_a_pid_or_pv1_field_is_answered(field: int, value: str) -> None:
    lines = adt("A01", "C9").split("\r")
    for index, line in enumerate(lines):
        if line.startswith("PID|"):
            fields = line.split("|") + [""] * 50
            fields[field] = value
            lines[index] = "|".join(fields).rstrip("|")
    listen("\r".join(lines).encode("utf-8", errors="surrogatepass"))
