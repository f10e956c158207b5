"""HL7 v2 ER7 ("pipe and hat") encoding rules: read and write segments, fields, escapes (pure).

Implements the encoding rules of HL7 v2.5.1 chapter 2.5-2.7, which are the same from v2.3 to
v2.5.1: segments end with a carriage return; the delimiters are declared by MSH-1 (field
separator) and MSH-2 (component, repetition, escape, subcomponent); text containing a
delimiter is written with the escape sequences ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``, a line break
(CR, LF, CRLF) as ``\\.br\\`` and other control characters as ``\\Xhh\\``. :func:`escape` is
the one escaper of every message pacsflow builds (ORU, alert, ORM/OMI, ACK).

Why not hl7apy's parser here: ``hl7apy.parser.parse_message`` takes about 7 ms for a
four-segment ADT^A01 on the project's machines (element objects and a module lookup per
element), which alone caps one MLLP connection below the 200 ADT messages/s the listener
must sustain. Reading the dozen fields pacsflow needs from split strings takes microseconds.
hl7apy stays the reference: ``integrations.hl7.structure`` takes the segment vocabulary and
message structures from it, and the tests check this module's output against hl7apy's
parser and strict validation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

SEGMENT_TERMINATOR = "\r"
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")


class Er7Error(ValueError):
    """The text does not follow the ER7 encoding rules (no MSH, bad delimiters...)."""


@dataclass(frozen=True)
class Delimiters:
    """The five delimiters a message declares in MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as written: component, repetition, escape, subcomponent."""
        return self.component + self.repetition + self.escape + self.subcomponent

    @classmethod
    def from_msh(cls, msh: str) -> Delimiters:
        """Read the delimiters from the start of an MSH segment."""
        if not msh.startswith("MSH") or len(msh) < 8:
            raise Er7Error("the message does not start with an MSH segment")
        field = msh[3]
        encoding = msh[4:].split(field, 1)[0]
        if len(encoding) < 4:
            raise Er7Error(f"MSH-2 encoding characters {encoding!r} are incomplete")
        delimiters = cls(field, encoding[0], encoding[1], encoding[2], encoding[3])
        chosen = (field, *encoding[:4])
        if len(set(chosen)) != 5 or any(c.isalnum() or c in "\r\n" for c in chosen):
            raise Er7Error(
                f"MSH-1/MSH-2 delimiters {''.join(chosen)!r} are not five distinct symbols"
            )
        return delimiters


DEFAULT_DELIMITERS = Delimiters()

# Escape sequences of HL7 v2.5.1 section 2.7.4, by the delimiter they stand for.
_ESCAPE_NAMES = {"F": "field", "S": "component", "T": "subcomponent", "R": "repetition"}
# C0 control characters other than tab (CR and LF are line breaks, see escape).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]")


def escape(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Text as it must be written inside a field: delimiters replaced by escape sequences."""
    return _escape(text, delimiters, hold=False)


# hl7apy's writer (priority and alert messages are built with it) knows only the \F\ \S\
# \T\ \R\ \E\ \H\ \N\ sequences and re-escapes any other backslash, so "\.br\" would
# reach the receiver as the literal text "\E\.br\E\". For those messages the line-break and
# hex sequences are held as private-use characters while hl7apy writes, then released.
_HELD_LINE_BREAK = "\ue000"
_HELD_CONTROL_BASE = 0xE100  # + the control character's code
_HELD = re.compile("[\ue000\ue100-\ue17f]")


def escape_held(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """:func:`escape` for a value given to hl7apy; pass the message it writes through
    :func:`release_held`."""
    return _escape(_HELD.sub("\ufffd", text), delimiters, hold=True)


def release_held(er7: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """The message text with the sequences :func:`escape_held` held written out."""
    e = delimiters.escape

    def written(match: re.Match[str]) -> str:
        if match.group() == _HELD_LINE_BREAK:
            return f"{e}.br{e}"
        return f"{e}X{ord(match.group()) - _HELD_CONTROL_BASE:02X}{e}"

    return _HELD.sub(written, er7)


def _escape(text: str, delimiters: Delimiters, *, hold: bool) -> str:
    e = delimiters.escape
    out = text.replace(e, f"{e}E{e}")
    out = out.replace(delimiters.field, f"{e}F{e}")
    out = out.replace(delimiters.component, f"{e}S{e}")
    out = out.replace(delimiters.subcomponent, f"{e}T{e}")
    out = out.replace(delimiters.repetition, f"{e}R{e}")
    # A segment terminator inside a value would end the segment: write it as a line break.
    line_break = _HELD_LINE_BREAK if hold else f"{e}.br{e}"
    out = out.replace("\r\n", line_break).replace("\r", line_break).replace("\n", line_break)
    # The MLLP block characters would end the frame; other C0 controls have no place in ER7
    # text either: each is written as its hexadecimal escape \Xhh\ (section 2.7.6).
    if hold:
        return _CONTROL.sub(lambda match: chr(_HELD_CONTROL_BASE + ord(match.group())), out)
    return _CONTROL.sub(lambda match: f"{e}X{ord(match.group()):02X}{e}", out)


def unescape(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """The text a field value stands for: escape sequences resolved.

    Formatting sequences (``\\H\\``, ``\\N\\``, ``\\.sp\\``...) are dropped, ``\\.br\\`` becomes a
    line break, ``\\Xhh..\\`` becomes the bytes it names (read as Latin-1), anything unknown is
    kept as written.
    """
    e = delimiters.escape
    if e not in text:
        return text
    out: list[str] = []
    position = 0
    while True:
        start = text.find(e, position)
        if start < 0:
            out.append(text[position:])
            break
        end = text.find(e, start + 1)
        if end < 0:  # an unterminated escape: keep the rest literally
            out.append(text[position:])
            break
        out.append(text[position:start])
        name = text[start + 1 : end]
        if name in _ESCAPE_NAMES:
            out.append(getattr(delimiters, _ESCAPE_NAMES[name]))
        elif name == "E":
            out.append(e)
        elif name == ".br":
            out.append("\n")
        elif name[:1] == "X" and re.fullmatch(r"X(?:[0-9A-Fa-f]{2})+", name):
            out.append(bytes.fromhex(name[1:]).decode("latin-1"))
        elif name in ("H", "N") or name[:1] in (".", "C", "M", "Z"):
            pass  # highlighting, formatting, character-set switches: no text of their own
        else:
            out.append(text[start : end + 1])
        position = end + 1
    return "".join(out)


@dataclass(frozen=True)
class Repetition:
    """One repetition of a field: components and subcomponents, unescaped on demand."""

    raw: str
    delimiters: Delimiters = DEFAULT_DELIMITERS

    @cached_property
    def _components(self) -> list[str]:
        return self.raw.split(self.delimiters.component)

    def component(self, number: int, subcomponent: int = 1) -> str:
        """Component ``number`` (1-based), or one of its subcomponents, unescaped; '' if absent."""
        parts = self._components
        if number > len(parts):
            return ""
        value = parts[number - 1]
        if subcomponent > 1 or self.delimiters.subcomponent in value:
            subparts = value.split(self.delimiters.subcomponent)
            value = subparts[subcomponent - 1] if subcomponent <= len(subparts) else ""
        return unescape(value, self.delimiters)

    def raw_component(self, number: int) -> str:
        """Component ``number`` as written, subcomponents included."""
        parts = self._components
        return parts[number - 1] if number <= len(parts) else ""

    @property
    def is_empty(self) -> bool:
        return not self.raw.strip(self.delimiters.component + self.delimiters.subcomponent)

    @property
    def text(self) -> str:
        """The whole repetition as one unescaped text (component 1 of a simple value)."""
        return self.component(1)


@dataclass(frozen=True)
class Segment:
    """One segment: its three-letter ID and its fields as written."""

    name: str
    fields: tuple[str, ...]  # fields[n] is field n (the segment ID is not a field)
    delimiters: Delimiters = DEFAULT_DELIMITERS

    def raw(self, number: int) -> str:
        """Field ``number`` (1-based, MSH-1 is the field separator) exactly as written."""
        return self.fields[number] if number < len(self.fields) else ""

    def repetitions(self, number: int) -> list[Repetition]:
        """Every non-empty repetition of field ``number``."""
        raw = self.raw(number)
        if not raw:
            return []
        if self.name == "MSH" and number <= 2:
            return [Repetition(raw, self.delimiters)]
        found = [
            Repetition(part, self.delimiters) for part in raw.split(self.delimiters.repetition)
        ]
        return [item for item in found if not item.is_empty]

    def first(self, number: int) -> Repetition:
        """The first repetition of field ``number`` (an empty one when the field is empty)."""
        found = self.repetitions(number)
        return found[0] if found else Repetition("", self.delimiters)

    def value(self, number: int, component: int = 1, subcomponent: int = 1) -> str:
        """One unescaped value of field ``number`` (first repetition)."""
        if self.name == "MSH" and number <= 2:
            return self.raw(number)
        return self.first(number).component(component, subcomponent)


def split_segments(text: str) -> list[str]:
    """Segment strings of a message; CR, LF and CRLF are all accepted as terminators."""
    lines = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    return [line for line in lines if line.strip()]


def parse_segments(text: str) -> list[Segment]:
    """Tokenise a whole message; the first segment must be MSH (it declares the delimiters)."""
    lines = split_segments(text)
    if not lines:
        raise Er7Error("the message is empty")
    delimiters = Delimiters.from_msh(lines[0])
    segments = []
    for index, line in enumerate(lines, start=1):
        name = line[:3]
        if not _SEGMENT_ID.match(name) or (len(line) > 3 and line[3] != delimiters.field):
            raise Er7Error(f"segment {index} ({line[:12]!r}...) does not start with a segment ID")
        if name == "MSH":
            if index != 1:
                raise Er7Error(f"segment {index} is a second MSH")
            # MSH-1 is the field separator itself, so field n sits at split index n - 1.
            rest = line[4:].split(delimiters.field)
            fields = ("MSH", delimiters.field, *rest)
        else:
            fields = tuple(line.split(delimiters.field))
        segments.append(Segment(name, fields, delimiters))
    return segments


def component_text(*parts: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Components joined with ``^``, each escaped, trailing empty components dropped."""
    return delimiters.component.join(escape(part, delimiters) for part in parts).rstrip(
        delimiters.component
    )


def subcomponent_text(*parts: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Subcomponents joined with ``&``, each escaped, trailing empty ones dropped."""
    return delimiters.subcomponent.join(escape(part, delimiters) for part in parts).rstrip(
        delimiters.subcomponent
    )


def segment_text(name: str, fields: list[str], delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """A segment from already-encoded fields (``fields[0]`` is field 1), trailing empties dropped.

    For MSH, pass fields from MSH-3 on: MSH-1 and MSH-2 are written from ``delimiters``.
    """
    if name == "MSH":
        head = f"MSH{delimiters.field}{delimiters.encoding_characters}"
        body = delimiters.field.join(fields).rstrip(delimiters.field)
        return f"{head}{delimiters.field}{body}" if body else head
    return delimiters.field.join([name, *fields]).rstrip(delimiters.field)


def build_segment(
    name: str, values: dict[int, str], delimiters: Delimiters = DEFAULT_DELIMITERS
) -> str:
    """A segment from ``{field number: encoded value}``; for MSH numbering starts at MSH-3."""
    first = 3 if name == "MSH" else 1
    if not values:
        return segment_text(name, [], delimiters)
    if min(values) < first:
        raise ValueError(f"{name} fields are numbered from {first}")
    out = [""] * (max(values) - first + 1)
    for number, value in values.items():
        out[number - first] = value
    return segment_text(name, out, delimiters)
