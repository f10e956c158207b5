"""MSH-18 decides the character set; bytes that do not fit it are refused with the offset."""

from __future__ import annotations

import pytest

from integrations.hl7.charset import CharsetError, declared_charset, decode_message, python_codec
from tests.emr_samples import adt


def test_latin1_declared_message_decodes() -> None:
    raw = adt("A01", "L1", charset="8859/1", name="MÜLLER^JOSÉ").encode("latin-1")
    decoded = decode_message(raw)
    assert decoded.charset == "8859/1" and decoded.declared
    assert "MÜLLER^JOSÉ" in decoded.text


def test_utf8_declared_message_decodes() -> None:
    raw = adt("A01", "U1", charset="UNICODE UTF-8", name="ŁUKASZ^ŻÓŁW").encode("utf-8")
    assert "ŁUKASZ^ŻÓŁW" in decode_message(raw).text


def test_latin1_bytes_declared_utf8_are_refused_with_offset() -> None:
    raw = adt("A01", "X1", charset="UNICODE UTF-8", name="MÜLLER").encode("latin-1")
    with pytest.raises(CharsetError, match=r"byte 0xDC at offset \d+ is not valid UNICODE UTF-8"):
        decode_message(raw)


def test_empty_msh18_uses_the_default_and_says_so() -> None:
    raw = adt("A01", "D1", charset="", name="MÜLLER").encode("latin-1")
    assert declared_charset(raw) == ""
    assert "MÜLLER" in decode_message(raw, default_charset="8859/1").text
    with pytest.raises(CharsetError, match="assumed"):
        decode_message(raw, default_charset="UNICODE UTF-8")


def test_unsupported_charset_is_refused() -> None:
    raw = adt("A01", "J1", charset="ISO IR87", name="DOE^JOHN").encode("ascii")
    with pytest.raises(CharsetError, match="not supported"):
        decode_message(raw)
    assert python_codec("8859/15") == "iso-8859-15"
    assert python_codec("UNICODE") is None


def test_utf8_bytes_declared_latin1_are_refused_not_garbled() -> None:
    raw = adt("A01", "X2", charset="8859/1", name="MÜLLER").encode("utf-8")
    with pytest.raises(CharsetError, match="the bytes are UTF-8 but MSH-18 declares 8859/1"):
        decode_message(raw)


def test_iso_2022_alternate_sets_after_ascii_decode() -> None:
    from integrations.hl7.adt import parse_adt

    text = adt("A01", "J2", charset="ASCII~ISO IR87", name="山田^太郎")
    raw = text.encode("iso2022_jp")
    assert b"\x1b$B" in raw  # the kanji travel as JIS X 0208 behind an escape sequence
    decoded = decode_message(raw)
    assert decoded.charset == "ASCII" and "山田^太郎" in decoded.text
    message = parse_adt(decoded.text, ["2.5.1"])
    assert (message.name.family, message.name.given) == ("山田", "太郎")
    with pytest.raises(CharsetError):  # the same bytes without the code extension declared
        decode_message(adt("A01", "J3", charset="ISO IR87", name="山田").encode("iso2022_jp"))
