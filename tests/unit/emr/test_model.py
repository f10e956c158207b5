"""The hl7apy adapter: tolerant reading, values by position, the one escaper."""

from __future__ import annotations

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_message

from integrations.hl7.model import (
    Delimiters,
    Hl7SyntaxError,
    field_text,
    parse,
    recoded,
    set_field,
    to_er7,
    unescape,
)
from tests.emr_samples import adt

NASTY = ["O|Neil", "A^B", "x&y", "r~s", "back\\slash", "a\\F\\b", "\\H\\", "plain", "Ünïcødé ß"]
# hl7apy drops a component of white space alone when it builds or reads one
NASTY += [" ", "\t", " \xa0 "]


def written_and_read(text: str) -> str:
    """``text`` put in NTE-3 of a message hl7apy writes, then parsed back by hl7apy."""
    message = Message("ORU_R01", version="2.5.1")
    message.msh.msh_9 = "ORU^R01^ORU_R01"
    message.msh.msh_10 = "1"
    note = message.add_segment("NTE")
    set_field(note, 1, "1")
    set_field(note, 3, field_text(text))
    set_field(note, 4, "after")
    er7 = to_er7(message)
    for delimiter in "^&~":
        assert delimiter not in er7.split("\r")[1].split("|")[3]
    (nte,) = [segment for segment in parse(er7).segments if segment.name == "NTE"]
    assert nte.value(4) == "after"  # nothing shifted
    return nte.value(3)


@pytest.mark.parametrize("text", NASTY)
def test_text_round_trips_through_hl7apy(text: str) -> None:
    assert written_and_read(text) == text


def test_line_breaks_and_controls_are_escaped_not_written_as_segment_ends() -> None:
    assert written_and_read("a\r\nb\rPID|1||EVIL") == "a\nb\nPID|1||EVIL"
    assert written_and_read("bell\x07 frame\x0b\x1c") == "bell\x07 frame\x0b\x1c"


def test_unescape_formatting_and_hex_sequences() -> None:
    assert unescape("line one\\.br\\line two") == "line one\nline two"
    assert unescape("\\H\\bold\\N\\") == "bold"
    assert unescape("caf\\XE9\\") == "café"
    assert unescape("keep \\Q\\ unknown") == "keep \\Q\\ unknown"
    assert unescape("unterminated \\F") == "unterminated \\F"


def test_custom_delimiters_are_read_from_msh() -> None:
    text = "MSH#@*$%#APP#FAC#####ADT@A01#1#P#2.5.1\rPID#1##123@@@AUTH%UNI%ISO@MR*456##DOE@JANE\r"
    parsed = parse(text)
    assert parsed.delimiters == Delimiters("#", "@", "*", "$", "%")
    pid = parsed.segments[1]
    first, second = pid.repetitions(3)
    assert first.component(1) == "123"
    assert first.component(4, 2) == "UNI"
    assert second.component(1) == "456"
    assert pid.value(5, 2) == "JANE"
    assert recoded("A@B%C$F$|", parsed.delimiters) == "A^B&C\\F\\\\F\\"


def test_vendor_quirks_are_tolerated() -> None:
    text = adt("A01", "Q1")
    lf = parse(text.replace("\r", "\n"))  # LF-terminated segments
    assert [s.name for s in lf.segments] == ["MSH", "EVN", "PID", "PV1"]
    crlf = parse(text.replace("\r", "\r\n"))
    assert crlf.segments[2].value(5) == "MÜLLER"
    unknown = parse(adt("A01", "Q2", version="2.9"))  # read with v2.5 definitions
    assert unknown.declared_version == "2.9" and unknown.msh.value(10) == "Q2"
    extra = parse(text.replace("PID|1||", "PID|1|||||||||||||||||||||||||||||||x|y|z\rZPI|1||"))
    assert extra.segments[2].value(1) == "1" and extra.segments[3].value(3) == "12345"


def test_typed_values_are_read_as_written() -> None:
    pid = parse(adt("A01", "T1").replace("|19610415|", "|196104|")).segments[2]
    assert pid.value(7) == "196104"  # hl7apy types it DTM; the text stays the sender's
    assert pid.value(1) == "1"  # SI, an int to hl7apy


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("PID|1||123\r", "MSH"),
        ("MSH|^~\\&|A\rthis is not a segment\r", "segment ID"),
        ("MSH|^~\\&|A\rMSH|^~\\&|B\r", "second MSH"),
        ("MSH|^^\\&|A\r", "distinct"),
    ],
)
def test_malformed_text_is_refused(text: str, reason: str) -> None:
    with pytest.raises(Hl7SyntaxError, match=reason):
        parse(text)


def test_field_text_drops_trailing_empties_and_escapes_each_part() -> None:
    assert field_text("a", "", "c", "", "") == "a^^c"
    assert field_text("x|y", ("s&1", "s2", "")) == "x\\F\\y^s\\T\\1&s2"


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"])
@pytest.mark.parametrize("event", ["A01", "A02", "A03", "A08"])
def test_fields_by_position_agree_with_hl7apy_names(version: str, event: str) -> None:
    text = adt(event, "CTRL-1", version=version, name="O\\F\\NEIL^MÁIRE")
    ours = {segment.name: segment for segment in parse(text).segments}
    theirs = parse_message(text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)
    assert ours["MSH"].value(10) == theirs.msh.msh_10.to_er7()
    assert ours["MSH"].value(12) == theirs.msh.msh_12.to_er7()
    pid = theirs.pid
    reps = pid.pid_3 if isinstance(pid.pid_3, list) else list(pid.pid_3)
    assert [r.component(1) for r in ours["PID"].repetitions(3)] == [r.cx_1.to_er7() for r in reps]
    assert ours["PID"].first(3).component(4, 2) == reps[0].cx_4.hd_2.to_er7()
    assert ours["PID"].value(7) == pid.pid_7.to_er7()
    # hl7apy keeps escapes in to_er7(); the adapter resolves them
    assert ours["PID"].value(5, 1) == "O|NEIL"
    assert pid.pid_5[0].xpn_1.to_er7() == "O\\F\\NEIL"
    assert ours["PV1"].first(3).component(1) == theirs.pv1.pv1_3.pl_1.to_er7()
