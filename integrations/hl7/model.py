"""The thin adapter between pacsflow and hl7apy, its HL7 v2 message model (pure).

hl7apy parses every message pacsflow receives and builds every message it sends. This module
is what hl7apy needs around it, and nothing else:

- **tolerant reading.** :func:`parse` takes CR, LF or CRLF as segment terminators (vendor
  feeds use all three), refuses text that is not ER7 before hl7apy sees it (no MSH, a second
  MSH, delimiters that are not five distinct symbols, a line that is not a segment) and parses
  with ``VALIDATION_LEVEL.TOLERANT``: the listener checks what it needs itself
  (``integrations.hl7.adt``), and a missing optional segment or a vendor's extra component
  must not cost an AE.
- **cheap paths.** No ``Message`` is built to read. hl7apy parses a field when a reader
  first asks for it (``parse_field`` with the segment's reference structures, looked up once
  per segment ID and version); the parse of a field text is kept (:data:`PARSED_FIELDS_CACHED`)
  because a feed repeats most of them, and hl7apy's version libraries are looked up once.
  bench/hl7 measures what each saves.
- **values, not ER7.** hl7apy keeps escape sequences in what it parsed; :class:`Segment` and
  :class:`Repetition` read its element tree by position and resolve them (:func:`unescape`).
- **one escaper.** hl7apy's writer escapes ``| ^ & ~`` and lone backslashes but leaves a
  backslash that looks like ``\\F\\`` or ``\\H\\`` alone (so text cannot round-trip), passes CR
  (a segment injection) and the MLLP block characters, and re-escapes any sequence it does not
  know, such as ``\\.br\\``. :func:`escape` writes every delimiter and the escape character
  as their sequences and holds line breaks and control characters as private-use characters
  while hl7apy writes; :func:`to_er7` writes the message and releases them as ``\\.br\\`` and
  ``\\Xhh\\``. A value of white space alone, which hl7apy would drop, starts with ``\\Xhh\\``.
- **one way to build a field.** :func:`field_text` joins escaped components (the only place
  components are joined) and :func:`set_field` / :func:`set_fields` assign it; every builder
  (ORU, alert, ORM/OMI, ACK) composes its fields so.

Messages are built with hl7apy's default delimiters ``|^~\\&``; a received message may use
others, and is read with its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Any

from hl7apy import load_library
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.core import Segment as HL7apySegment
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import get_message_info
from hl7apy.parser import parse_field as hl7apy_parse_field

SEGMENT_TERMINATOR = "\r"
FALLBACK_VERSION = "2.5"  # parses the MSH of a message whose version hl7apy does not know
DEFAULT_VERSION = "2.5.1"  # what pacsflow writes when nothing says otherwise
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_POSITION = re.compile(r"_(\d+)$")
PARSED_FIELDS_CACHED = 4096  # hl7apy parses of field texts kept (see _parsed_field)


# What hl7apy raises on text it cannot read: its own exceptions, and on a malformed MSH
# (fewer fields than its encoding characters imply) IndexError or ValueError from its
# splitting (found by tests/faults/test_fuzz_adt.py).
HL7APY_READ_ERRORS = (HL7apyException, IndexError, ValueError)


class Hl7SyntaxError(ValueError):
    """The text is not an ER7 message hl7apy can read (no MSH, bad delimiters, bad segment)."""


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
            raise Hl7SyntaxError("the message does not start with an MSH segment")
        field = msh[3]
        encoding = msh[4:].split(field, 1)[0]
        if len(encoding) < 4:
            raise Hl7SyntaxError(f"MSH-2 encoding characters {encoding!r} are incomplete")
        chosen = (field, *encoding[:4])
        if len(set(chosen)) != 5 or any(c.isalnum() or c in "\r\n" for c in chosen):
            raise Hl7SyntaxError(
                f"MSH-1/MSH-2 delimiters {''.join(chosen)!r} are not five distinct symbols"
            )
        return cls(*chosen)


DEFAULT_DELIMITERS = Delimiters()

# --- the escaper -------------------------------------------------------------------------

_ESCAPE_NAMES = {"F": "field", "S": "component", "T": "subcomponent", "R": "repetition"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]")  # C0 controls other than tab
_HELD_LINE_BREAK = "\ue000"
_HELD_CONTROL_BASE = 0xE100  # + the code of a control (or white space) character
_HELD = re.compile("[\ue000\ue100-\ue1ff]")


def escape(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Text as it must be given to hl7apy for one value; write the message with :func:`to_er7`."""
    e = delimiters.escape
    out = _HELD.sub("\ufffd", text).replace(e, f"{e}E{e}")
    out = out.replace(delimiters.field, f"{e}F{e}")
    out = out.replace(delimiters.component, f"{e}S{e}")
    out = out.replace(delimiters.subcomponent, f"{e}T{e}")
    out = out.replace(delimiters.repetition, f"{e}R{e}")
    # A segment terminator inside a value would end the segment: it is a line break.
    out = out.replace("\r\n", _HELD_LINE_BREAK).replace("\r", _HELD_LINE_BREAK)
    out = out.replace("\n", _HELD_LINE_BREAK)
    # The MLLP block characters would end the frame; no C0 control belongs in ER7 text.
    out = _CONTROL.sub(lambda match: chr(_HELD_CONTROL_BASE + ord(match.group())), out)
    if out and not out.strip():
        # hl7apy drops a value of white space alone, when it builds and when it reads: its
        # first Latin-1 character is written as \Xhh\.
        first = next((i for i, char in enumerate(out) if ord(char) <= 0xFF), None)
        if first is not None:
            out = out[:first] + chr(_HELD_CONTROL_BASE + ord(out[first])) + out[first + 1 :]
    return out


def _release(er7: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    e = delimiters.escape

    def written(match: re.Match[str]) -> str:
        if match.group() == _HELD_LINE_BREAK:
            return f"{e}.br{e}"
        return f"{e}X{ord(match.group()) - _HELD_CONTROL_BASE:02X}{e}"

    return _HELD.sub(written, er7)


def to_er7(message: Message) -> str:
    """The ER7 text of a message built with hl7apy from :func:`escape` d values (segments
    separated by CR, as hl7apy writes them)."""
    return _release(message.to_er7())


Component = str | Sequence[str]  # one text, or its subcomponents


def field_text(*components: Component, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """One field repetition for hl7apy from its components (a text, or a sequence of
    subcomponent texts), each escaped; trailing empty parts dropped."""
    parts = []
    for component in components:
        subparts = [component] if isinstance(component, str) else list(component)
        joined = delimiters.subcomponent.join(escape(part, delimiters) for part in subparts)
        parts.append(joined.rstrip(delimiters.subcomponent))
    return delimiters.component.join(parts).rstrip(delimiters.component)


def set_field(segment: Any, number: int, *repetitions: str) -> None:
    """Field ``number`` of an hl7apy segment from :func:`field_text` repetitions (empty ones
    are left out, an all-empty field stays absent).

    A new field is parsed by hl7apy's ``parse_field`` with the segment's cached reference
    and added; hl7apy's own assignment looks the reference up for every field it parses.
    """
    name = f"{segment.name}_{number}"
    values = [value for value in repetitions if value]
    if not values:
        return
    if len(segment.children.get(name)):  # a reused message: hl7apy's assignment replaces it
        setattr(segment, name.lower(), values[0])
        for value in values[1:]:
            segment.add_field(name).value = value
        return
    references, varies = _segment_references(segment.name, segment.version)
    reference = references[name]["ref"] if name in references else None
    encoding_chars = _encoding_chars(DEFAULT_DELIMITERS)
    for value in values:
        field = hl7apy_parse_field(
            value,
            name,
            segment.version,
            encoding_chars,
            segment.validation_level,
            reference,
            varies,
        )
        segment.add(field)
    segment.set_parent_to_traversal()  # a segment reached as message.pid joins its parent now


def set_fields(segment: Any, values: dict[int, str]) -> None:
    """Several fields of an hl7apy segment: ``{number: field_text(...)}``."""
    for number, value in sorted(values.items()):
        set_field(segment, number, value)


def recoded(raw: str, source: Delimiters) -> str:
    """ER7 text written with ``source`` delimiters, as the default delimiters write it (a
    default delimiter that was literal text becomes its escape sequence)."""
    if source == DEFAULT_DELIMITERS:
        return raw
    target = DEFAULT_DELIMITERS
    names = ("field", "component", "repetition", "escape", "subcomponent")
    mapping = {getattr(source, name): getattr(target, name) for name in names}
    literal = {getattr(target, name): escape(getattr(target, name)) for name in names}
    return "".join(mapping.get(char) or literal.get(char) or char for char in raw)


def unescape(text: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """The text a value stands for: escape sequences resolved.

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
        end = text.find(e, start + 1) if start >= 0 else -1
        if start < 0 or end < 0:  # no more escapes, or an unterminated one: literal
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
        elif not (name in ("H", "N") or name[:1] in (".", "C", "M", "Z")):
            out.append(text[start : end + 1])  # unknown: kept; formatting: no text of its own
        position = end + 1
    return "".join(out)


# --- reading -----------------------------------------------------------------------------


def _positions(children: Sequence[Any]) -> dict[int, Any]:
    """hl7apy children by their 1-based position (``CX_4`` is 4; unnamed ones in order)."""
    found: dict[int, Any] = {}
    for index, child in enumerate(children, start=1):
        match = _POSITION.search(child.name or "")
        found.setdefault(int(match.group(1)) if match else index, child)
    return found


def _leaf_text(leaf: Any) -> str:
    """A leaf's text as written: hl7apy keeps text as it was sent, and re-formats what it
    typed (DTM, NM, SI) in the precision it was sent in."""
    value = leaf.value
    text = getattr(value, "value", value)
    if text is None or isinstance(text, str):
        return text or ""
    return str(value.to_er7())


@dataclass(frozen=True)
class Repetition:
    """One repetition of a field (an hl7apy ``Field``): its values by position, unescaped."""

    element: Any
    delimiters: Delimiters = DEFAULT_DELIMITERS

    @cached_property
    def _components(self) -> dict[int, Any]:
        if self.element is None:
            return {}
        return _positions(self.element.children)

    def _subcomponents(self, number: int) -> dict[int, Any]:
        component = self._components.get(number)
        return {} if component is None else _positions(component.children)

    def component(self, number: int, subcomponent: int = 1) -> str:
        """Component ``number`` (1-based), or one of its subcomponents, unescaped; '' if absent."""
        leaf = self._subcomponents(number).get(subcomponent)
        return "" if leaf is None else unescape(_leaf_text(leaf), self.delimiters)

    def _raw_component(self, number: int) -> str:
        """Component ``number`` as written, subcomponents included."""
        subparts = self._subcomponents(number)
        if not subparts:
            return ""
        texts = [
            _leaf_text(subparts[n]) if n in subparts else "" for n in range(1, max(subparts) + 1)
        ]
        return self.delimiters.subcomponent.join(texts).rstrip(self.delimiters.subcomponent)

    @property
    def raw(self) -> str:
        """The repetition as written."""
        if not self._components:
            return ""
        texts = [self._raw_component(n) for n in range(1, max(self._components) + 1)]
        return self.delimiters.component.join(texts).rstrip(self.delimiters.component)

    @property
    def is_empty(self) -> bool:
        return not self.raw.strip(self.delimiters.component + self.delimiters.subcomponent)


@dataclass(frozen=True)
class Segment:
    """One received segment, read by field number; hl7apy parses a field when it is first
    read (``parse_field`` with the segment's reference structures, looked up once)."""

    line: str  # the segment as received, without its terminator
    delimiters: Delimiters = DEFAULT_DELIMITERS
    version: str = DEFAULT_VERSION

    @property
    def name(self) -> str:
        return self.line[:3]

    @cached_property
    def _field_texts(self) -> list[str]:
        """Field n as written is ``[n - 1]``, as hl7apy's ``parse_segment`` splits it."""
        if self.name == "MSH":  # MSH-1 is the field separator itself
            return [self.delimiters.field, *self.line[4:].split(self.delimiters.field)]
        return self.line[4:].split(self.delimiters.field) if len(self.line) > 4 else []

    @cached_property
    def _parsed(self) -> dict[int, list[Repetition]]:
        return {}

    def _field(self, number: int) -> list[Repetition]:
        if number not in self._parsed:
            self._parsed[number] = self._parse_field(number)
        return self._parsed[number]

    def _parse_field(self, number: int) -> list[Repetition]:
        texts = self._field_texts
        if not 1 <= number <= len(texts) or not texts[number - 1].strip():
            return []  # hl7apy's parse_fields leaves an empty field out too
        name = f"{self.name}_{number}"
        parsed = _parsed_field(texts[number - 1], name, self.version, self.delimiters)
        return [Repetition(element, self.delimiters) for element in parsed]

    def raw(self, number: int) -> str:
        """Field ``number`` (1-based, MSH-1 is the field separator) as written."""
        if self.name == "MSH" and number <= 2:
            d = self.delimiters
            return d.field if number == 1 else d.encoding_characters
        return self.delimiters.repetition.join(rep.raw for rep in self._field(number))

    @property
    def fields(self) -> tuple[str, ...]:
        """Every field as written, ``fields[n]`` is field n (trailing empty fields dropped)."""
        texts = self._field_texts
        last = max((n for n, text in enumerate(texts, start=1) if text.strip()), default=0)
        if self.name == "MSH":
            last = max(last, 2)
        return (self.name, *(self.raw(number) for number in range(1, last + 1)))

    def repetitions(self, number: int) -> list[Repetition]:
        """Every non-empty repetition of field ``number``."""
        return [rep for rep in self._field(number) if not rep.is_empty]

    def first(self, number: int) -> Repetition:
        """The first repetition of field ``number`` (an empty one when the field is empty)."""
        found = self.repetitions(number)
        return found[0] if found else Repetition(None, self.delimiters)

    def value(self, number: int, component: int = 1, subcomponent: int = 1) -> str:
        """One unescaped value of field ``number`` (first repetition)."""
        if self.name == "MSH" and number <= 2:
            return self.raw(number)
        return self.first(number).component(component, subcomponent)


def segment_lines(text: str) -> list[str]:
    """The segments of a message as text; CR, LF and CRLF are all accepted as terminators."""
    lines = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    return [line for line in lines if line.strip()]


@dataclass(frozen=True)
class ParsedMessage:
    """A received message as hl7apy parsed it, its segments read through the adapter."""

    delimiters: Delimiters
    segments: tuple[Segment, ...]  # MSH alone when parsed with header_only
    declared_version: str  # MSH-12.1 as sent (hl7apy may have read it with FALLBACK_VERSION)
    version: str  # the definitions hl7apy read it with
    lines: tuple[str, ...]  # the segments as text, for the rest of a header-only parse

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def with_body(self, only: frozenset[str] | None = None) -> ParsedMessage:
        """The message with its segments after MSH parsed by hl7apy (MSH is not parsed again);
        with ``only``, just the segments of those IDs (what a reader does not use, it does not
        pay hl7apy to parse)."""
        lines = [line for line in self.lines[1:] if only is None or line[:3] in only]
        body = _hl7apy_segments(lines, self.delimiters, self.version)
        return replace(self, segments=(self.segments[0], *body))


def checked_lines(text: str) -> tuple[list[str], Delimiters]:
    """The segment lines of ER7 text and its delimiters; refuses what is not ER7."""
    lines = segment_lines(text)
    if not lines:
        raise Hl7SyntaxError("the message is empty")
    delimiters = Delimiters.from_msh(lines[0])
    for index, line in enumerate(lines, start=1):
        name = line[:3]
        if not _SEGMENT_ID.match(name) or (len(line) > 3 and line[3] != delimiters.field):
            raise Hl7SyntaxError(
                f"segment {index} ({line[:12]!r}...) does not start with a segment ID"
            )
        if name == "MSH" and index != 1:
            raise Hl7SyntaxError(f"segment {index} is a second MSH")
    return lines, delimiters


@lru_cache(maxsize=32)
def known_version(version: str) -> bool:
    """True for an HL7 version hl7apy has the definitions of."""
    try:
        load_library(version)
    except HL7apyException:
        return False
    return True


@lru_cache(maxsize=32)
def _encoding_chars(delimiters: Delimiters) -> dict[str, str]:
    d = delimiters
    return {
        "FIELD": d.field,
        "COMPONENT": d.component,
        "REPETITION": d.repetition,
        "ESCAPE": d.escape,
        "SUBCOMPONENT": d.subcomponent,
        "SEGMENT": SEGMENT_TERMINATOR,
        "GROUP": SEGMENT_TERMINATOR,
    }


@lru_cache(maxsize=512)
def _segment_references(segment_id: str, version: str) -> tuple[dict[str, Any], bool]:
    """hl7apy's reference structures of a segment's fields, and whether fields beyond them
    are read as ``varies`` (Z segments): what ``parse_segment`` looks up for every segment."""
    try:
        segment = HL7apySegment(
            segment_id, version=version, validation_level=VALIDATION_LEVEL.TOLERANT
        )
    except HL7apyException as error:
        raise Hl7SyntaxError(f"hl7apy cannot read segment {segment_id}: {error}") from None
    return segment.structure_by_name, bool(segment.allow_infinite_children)


@lru_cache(maxsize=PARSED_FIELDS_CACHED)
def _parsed_field(text: str, name: str, version: str, delimiters: Delimiters) -> tuple[Any, ...]:
    """hl7apy's parse of one field (each repetition), with the segment's cached references.

    A feed repeats most field texts (applications, message types, wards, doctors, a patient's
    identifiers in each of their messages), so parses are kept: the same text in the same
    field always parses the same, and readers never change what hl7apy returned.
    """
    references, varies = _segment_references(name[:3], version)
    reference = references[name]["ref"] if name in references else None
    encoding_chars = _encoding_chars(delimiters)
    try:
        return tuple(
            hl7apy_parse_field(
                repetition,
                name,
                version,
                encoding_chars,
                VALIDATION_LEVEL.TOLERANT,
                reference,
                varies,
            )
            for repetition in text.split(delimiters.repetition)
        )
    except HL7APY_READ_ERRORS as error:
        raise Hl7SyntaxError(f"hl7apy cannot read {name}: {error}") from None


def _hl7apy_segments(
    lines: Sequence[str], delimiters: Delimiters, version: str
) -> tuple[Segment, ...]:
    for line in lines:
        _segment_references(line[:3], version)  # a segment hl7apy does not know is refused now
    return tuple(Segment(line, delimiters, version) for line in lines)


def parse(text: str, *, header_only: bool = False) -> ParsedMessage:
    """Parse a message with hl7apy, field by field as they are read (tolerant, no
    ``Message``, which is most of hl7apy's cost); ``header_only`` keeps MSH alone, and
    :meth:`ParsedMessage.with_body` adds the other segments later.

    A version hl7apy does not know is read with the v2.5 definitions, so that the message can
    still be acknowledged with its control ID (the caller refuses the version itself).
    """
    lines, delimiters = checked_lines(text)
    try:
        declared = (get_message_info(lines[0])[2] or "").strip()
    except HL7APY_READ_ERRORS as error:
        raise Hl7SyntaxError(f"MSH cannot be read: {error}") from None
    version = declared if known_version(declared) else FALLBACK_VERSION
    parsed = ParsedMessage(
        delimiters,
        _hl7apy_segments(lines[:1], delimiters, version),
        declared,
        version,
        tuple(lines),
    )
    return parsed if header_only else parsed.with_body()


def _reuse_hl7apy_libraries() -> None:
    """hl7apy looks its version library up through ``importlib`` for every element it creates
    (about 1,600 times for one ADT^A01); the modules never change, so the lookup is cached.
    About a third of hl7apy's parse time (bench/hl7)."""
    import hl7apy
    import hl7apy.core
    import hl7apy.factories

    if not hasattr(hl7apy.load_library, "cache_info"):
        cached = lru_cache(maxsize=None)(hl7apy.load_library)
        hl7apy.load_library = hl7apy.core.load_library = hl7apy.factories.load_library = cached


_reuse_hl7apy_libraries()
