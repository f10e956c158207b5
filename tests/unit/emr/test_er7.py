"""ER7 reading and writing, checked against hl7apy's parser on the same messages."""

from __future__ import annotations

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from integrations.hl7.er7 import (
    Delimiters,
    Er7Error,
    build_segment,
    component_text,
    escape,
    parse_segments,
    unescape,
)
from tests.emr_samples import adt

NASTY = ["O|Neil", "A^B", "x&y", "r~s", "back\\slash", "a\\F\\b", "plain", "", "Ünïcødé ß"]


@pytest.mark.parametrize("text", NASTY)
def test_escape_round_trips(text: str) -> None:
    encoded = escape(text)
    for delimiter in "|^&~":
        assert delimiter not in encoded
    assert unescape(encoded) == text


def test_unescape_formatting_and_hex_sequences() -> None:
    assert unescape("line one\\.br\\line two") == "line one\nline two"
    assert unescape("\\H\\bold\\N\\") == "bold"
    assert unescape("caf\\XE9\\") == "café"
    assert unescape("keep \\Q\\ unknown") == "keep \\Q\\ unknown"
    assert unescape("unterminated \\F") == "unterminated \\F"


def test_line_breaks_are_escaped_not_written_as_segment_ends() -> None:
    assert "\r" not in escape("a\r\nb") and unescape(escape("a\r\nb")) == "a\nb"


def test_custom_delimiters_are_read_from_msh() -> None:
    text = "MSH#@*$%#APP#FAC#\rPID#1##123@@@AUTH%UNI%ISO@MR*456##DOE@JANE\r"
    segments = parse_segments(text)
    assert segments[0].delimiters == Delimiters("#", "@", "*", "$", "%")
    pid = segments[1]
    first, second = pid.repetitions(3)
    assert first.component(1) == "123"
    assert first.component(4, 2) == "UNI"
    assert second.component(1) == "456"
    assert pid.value(5, 2) == "JANE"


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
    with pytest.raises(Er7Error, match=reason):
        parse_segments(text)


def test_segment_writer_drops_trailing_empties_and_numbers_msh_from_3() -> None:
    assert build_segment("OBX", {1: "1", 5: "x"}) == "OBX|1||||x"
    msh = build_segment("MSH", {3: "APP", 10: "ID1", 12: "2.5.1"})
    assert msh == "MSH|^~\\&|APP|||||||ID1||2.5.1"
    assert parse_segments(msh + "\r")[0].value(10) == "ID1"
    assert component_text("a", "", "c", "", "") == "a^^c"


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"])
@pytest.mark.parametrize("event", ["A01", "A02", "A03", "A08"])
def test_fields_agree_with_hl7apy(version: str, event: str) -> None:
    text = adt(event, "CTRL-1", version=version, name="O\\F\\NEIL^MÁIRE")
    ours = {segment.name: segment for segment in parse_segments(text)}
    theirs = parse_message(text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)
    assert ours["MSH"].value(10) == theirs.msh.msh_10.to_er7()
    assert ours["MSH"].value(12) == theirs.msh.msh_12.to_er7()
    pid = theirs.pid
    reps = pid.pid_3 if isinstance(pid.pid_3, list) else list(pid.pid_3)
    assert [r.component(1) for r in ours["PID"].repetitions(3)] == [r.cx_1.to_er7() for r in reps]
    assert ours["PID"].first(3).component(4, 2) == reps[0].cx_4.hd_2.to_er7()
    assert ours["PID"].value(7) == pid.pid_7.to_er7()
    # hl7apy keeps escapes in to_er7(); ours resolves them
    assert ours["PID"].value(5, 1) == "O|NEIL"
    assert pid.pid_5[0].xpn_1.to_er7() == "O\\F\\NEIL"
    assert ours["PV1"].first(3).component(1) == theirs.pv1.pv1_3.pl_1.to_er7()
