"""Character sets of HL7 v2 messages: MSH-18 (table 0211) to a Python codec, strict decode (pure).

The part of the hl7apy adapter that works on bytes: hl7apy parses text and knows nothing of
MSH-18, so a received message is decoded here before :func:`integrations.hl7.model.parse`.
An MLLP frame carries bytes; the text they stand for depends on MSH-18. pacsflow reads MSH-18
from the raw bytes (the MSH segment itself is ASCII in every character set it accepts),
decodes the whole message strictly with that character set, and refuses a message whose
bytes are not valid in it instead of guessing: a Latin-1 "Müller" sent as UTF-8 would
otherwise reach the EMR as "M\\ufffdller". The reverse mistake (UTF-8 bytes declared as an
ISO 8859 set) decodes without error into "MÃ¼ller", so it is detected explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from integrations.hl7.model import Hl7SyntaxError, ParsedMessage, checked_lines, parse

# HL7 table 0211 (alternate character sets) -> Python codec; the single-byte ISO 8859 parts,
# ASCII and UTF-8. A two-byte set is accepted as an alternate set only (ISO 2022 code
# extension, below), never as the default one.
_CHARSETS = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "iso-8859-1",
    "ISO IR100": "iso-8859-1",
    "8859/2": "iso-8859-2",
    "ISO IR101": "iso-8859-2",
    "8859/3": "iso-8859-3",
    "8859/4": "iso-8859-4",
    "8859/5": "iso-8859-5",
    "ISO IR144": "iso-8859-5",
    "8859/6": "iso-8859-6",
    "8859/7": "iso-8859-7",
    "ISO IR126": "iso-8859-7",
    "8859/8": "iso-8859-8",
    "ISO IR138": "iso-8859-8",
    "8859/9": "iso-8859-9",
    "ISO IR148": "iso-8859-9",
    "8859/15": "iso-8859-15",
    "UNICODE UTF-8": "utf-8",
    "ISO IR192": "utf-8",
}

UTF8 = "UNICODE UTF-8"
# ISO 2022 code extension (HL7 v2.5.1 section 2.15.9.18.1): MSH-18 repeats, the first value is
# the default set and the others the sets escape sequences switch to: JIS X 0208 / 0212 (ISO
# IR87 / IR159), KS X 1001 (ISO IR149), GB 2312 (ISO IR58). Python's ISO-2022-JP-2 reads each.
_CODE_EXTENSION_SETS = frozenset({"ISO IR87", "ISO IR159", "ISO IR149", "ISO IR58"})
ISO2022 = "iso2022_jp_2"


def python_codec(hl7_name: str) -> str | None:
    """The Python codec for an HL7 table 0211 value, None when pacsflow does not accept it."""
    return _CHARSETS.get(hl7_name.strip().upper().replace("_", " "))


class CharsetError(ValueError):
    """The message's bytes are not valid in its declared (or the default) character set."""


@dataclass(frozen=True)
class DecodedMessage:
    text: str
    charset: str  # the HL7 name used
    declared: bool  # True when MSH-18 named it, False when the default applied
    msh: ParsedMessage | None = None  # hl7apy's parse of MSH, valid for ``text``


def read_msh(raw: bytes) -> ParsedMessage | None:
    """MSH of the raw bytes as hl7apy parses it; None when it cannot be read.

    MSH is ASCII in every accepted character set, so reading the bytes as Latin-1 (which maps
    every byte to one character) gives it exactly before the character set is known.
    """
    end = min((found for found in (raw.find(b"\r"), raw.find(b"\n")) if found >= 0), default=None)
    try:
        return parse(raw[:end].decode("latin-1"), header_only=True)
    except Hl7SyntaxError:
        return None


def declared_charset(raw: bytes) -> str:
    """MSH-18 (first repetition) as hl7apy reads MSH; '' when absent or unreadable."""
    return _declared(read_msh(raw))


def _declared(msh: ParsedMessage | None) -> str:
    value = msh.msh.value(18).strip() if msh is not None else ""
    return value if value.isascii() else ""


def _code_extension(msh: ParsedMessage | None) -> bool:
    """True when MSH-18 names ISO 2022 alternate sets after the default one."""
    if msh is None:
        return False
    alternates = [rep.component(1).strip().upper() for rep in msh.msh.repetitions(18)[1:]]
    return any(name in _CODE_EXTENSION_SETS for name in alternates)


def decode_message(raw: bytes, default_charset: str = UTF8) -> DecodedMessage:
    """Decode a message strictly in its MSH-18 character set (or ``default_charset``)."""
    msh = read_msh(raw)
    name = _declared(msh)
    declared = bool(name)
    name = name or default_charset
    codec = (
        ISO2022 if _code_extension(msh) and python_codec(name) == "ascii" else python_codec(name)
    )
    if codec is None:
        raise CharsetError(f"MSH-18 character set {name!r} is not supported")
    if codec.startswith("iso-8859") and _looks_like_utf8(raw):
        raise CharsetError(
            f"the bytes are UTF-8 but {'MSH-18 declares' if declared else 'the default is'} {name}:"
            " names would be stored garbled"
        )
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as error:
        source = "declared in MSH-18" if declared else "assumed (MSH-18 empty)"
        raise CharsetError(
            f"byte 0x{raw[error.start]:02X} at offset {error.start} is not valid {name} ({source})"
        ) from None
    # The MSH parse holds for the decoded text when MSH is ASCII (as the standard has it).
    if msh is not None and msh.lines[0].isascii():
        try:
            msh = replace(msh, lines=tuple(checked_lines(text)[0]))
        except Hl7SyntaxError:
            msh = None  # read_header says what is wrong
    else:
        msh = None
    return DecodedMessage(text, name, declared, msh)


def _looks_like_utf8(raw: bytes) -> bool:
    """True when non-ASCII bytes form valid UTF-8 sequences: text written in an ISO 8859 set
    practically never does (it would need e.g. "Ã" followed by "©"), UTF-8 always does."""
    if all(byte < 0x80 for byte in raw):
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def encode_message(text: str, hl7_name: str) -> bytes:
    """Encode outgoing text in the character set its MSH-18 names."""
    codec = python_codec(hl7_name or "ASCII")
    if codec is None:
        raise CharsetError(f"character set {hl7_name!r} is not supported")
    return text.encode(codec)
