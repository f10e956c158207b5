"""Structural check of an encoded dataset: every element's length fits in the bytes (pure).

pydicom reads a truncated dataset without complaint (a short Pixel Data value comes back
short), so the node walks the encoding itself before it acknowledges an instance: element
headers, defined lengths, undefined-length sequences and items, and encapsulated pixel data
fragments must all end inside the buffer. Nothing is decoded.
"""

from __future__ import annotations

import struct
import zlib

from integrations.errors import DatasetError

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"

UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIMITATION = 0xFFFEE00D
SEQUENCE_DELIMITATION = 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
# Explicit VRs whose length field is 4 bytes after 2 reserved bytes (PS3.5 7.1.2).
LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
MAX_NESTING = 64


class _Walker:
    def __init__(
        self, data: bytes, implicit: bool, little_endian: bool, wanted: frozenset[int] = frozenset()
    ) -> None:
        self.data = data
        self.implicit = implicit
        self.wanted = wanted
        self.values: dict[int, bytes] = {}
        prefix = "<" if little_endian else ">"
        self.u16 = struct.Struct(prefix + "H")
        self.u32 = struct.Struct(prefix + "I")
        # Item and delimitation tags are always little endian in little-endian syntaxes and
        # big endian in the big-endian syntax; they share the element byte order.

    def fail(self, offset: int, why: str) -> DatasetError:
        return DatasetError(f"malformed dataset at byte {offset}: {why}")

    def read_tag(self, offset: int) -> int:
        if offset + 4 > len(self.data):
            raise self.fail(offset, "truncated element tag")
        group = self.u16.unpack_from(self.data, offset)[0]
        element = self.u16.unpack_from(self.data, offset + 2)[0]
        return (group << 16) | element

    def elements(self, offset: int, end: int | None, depth: int) -> int:
        """Walk elements from ``offset`` to ``end`` (or to an item delimiter when None)."""
        if depth > MAX_NESTING:
            raise self.fail(offset, "sequences nested too deeply")
        limit = len(self.data) if end is None else end
        while offset < limit:
            tag = self.read_tag(offset)
            if tag == ITEM_DELIMITATION:
                if end is not None:
                    raise self.fail(offset, "item delimiter inside a defined-length item")
                return offset + 8
            start = offset
            offset, vr, length = self.header(offset, tag)
            if length == UNDEFINED_LENGTH:
                if vr == b"UN":
                    # An undefined-length UN is a sequence encoded in implicit VR (PS3.5 6.2.2).
                    offset = _Walker(self.data, True, True).sequence(offset, depth + 1)
                elif vr == b"SQ" or (vr is None and tag != PIXEL_DATA):
                    offset = self.sequence(offset, depth + 1)
                elif tag == PIXEL_DATA:
                    offset = self.fragments(offset)
                else:
                    raise self.fail(
                        offset, f"undefined length on element ({tag >> 16:04X},{tag & 0xFFFF:04X})"
                    )
                if depth == 0 and tag in self.wanted and vr != b"UN":
                    # The whole sequence (items and its delimiter), for sequence_items().
                    self.values[tag] = self.data[self.value_start(start, vr) : offset]
            else:
                if offset + length > limit:
                    raise self.fail(
                        offset,
                        f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) declares {length} bytes, "
                        f"only {limit - offset} remain (truncated)",
                    )
                if vr == b"SQ" and length:
                    self.items(offset, offset + length, depth + 1)
                if depth == 0 and tag in self.wanted:
                    self.values[tag] = self.data[offset : offset + length]
                offset += length
        if end is None:
            raise self.fail(offset, "missing item delimiter (truncated)")
        if offset != limit:
            raise self.fail(offset, "element overruns its item")
        return offset

    def header(self, offset: int, tag: int) -> tuple[int, bytes | None, int]:
        if self.implicit or (tag >> 16) == 0xFFFE:
            if offset + 8 > len(self.data):
                raise self.fail(offset, "truncated element header")
            return offset + 8, None, self.u32.unpack_from(self.data, offset + 4)[0]
        if offset + 8 > len(self.data):
            raise self.fail(offset, "truncated element header")
        vr = self.data[offset + 4 : offset + 6]
        if not (vr.isalpha() and vr.isupper()):
            raise self.fail(offset, f"invalid value representation {vr!r}")
        if vr in LONG_LENGTH_VRS:
            if offset + 12 > len(self.data):
                raise self.fail(offset, "truncated element header")
            return offset + 12, vr, self.u32.unpack_from(self.data, offset + 8)[0]
        return offset + 8, vr, self.u16.unpack_from(self.data, offset + 6)[0]

    def value_start(self, element_start: int, vr: bytes | None) -> int:
        if vr is None:
            return element_start + 8
        return element_start + (12 if vr in LONG_LENGTH_VRS else 8)

    def sequence(self, offset: int, depth: int) -> int:
        """An undefined-length sequence: items until the sequence delimiter."""
        while True:
            tag = self.read_tag(offset)
            if offset + 8 > len(self.data):
                raise self.fail(offset, "truncated sequence")
            length = self.u32.unpack_from(self.data, offset + 4)[0]
            offset += 8
            if tag == SEQUENCE_DELIMITATION:
                return offset
            if tag != ITEM:
                raise self.fail(offset - 8, "expected an item or a sequence delimiter")
            offset = self.item_body(offset, length, depth)

    def items(self, offset: int, end: int, depth: int) -> None:
        """A defined-length sequence: items that exactly fill ``end - offset`` bytes."""
        while offset < end:
            tag = self.read_tag(offset)
            if tag != ITEM or offset + 8 > end:
                raise self.fail(offset, "expected an item inside a sequence")
            length = self.u32.unpack_from(self.data, offset + 4)[0]
            offset = self.item_body(offset + 8, length, depth)
        if offset != end:
            raise self.fail(offset, "item overruns its sequence")

    def item_body(self, offset: int, length: int, depth: int) -> int:
        if length == UNDEFINED_LENGTH:
            return self.elements(offset, None, depth)
        if offset + length > len(self.data):
            raise self.fail(offset, f"item declares {length} bytes (truncated)")
        return self.elements(offset, offset + length, depth)

    def fragments(self, offset: int) -> int:
        """Encapsulated pixel data: fragment items until the sequence delimiter (PS3.5 A.4)."""
        while True:
            tag = self.read_tag(offset)
            if offset + 8 > len(self.data):
                raise self.fail(offset, "truncated pixel data fragment")
            length = self.u32.unpack_from(self.data, offset + 4)[0]
            offset += 8
            if tag == SEQUENCE_DELIMITATION:
                return offset
            if tag != ITEM or length == UNDEFINED_LENGTH:
                raise self.fail(offset - 8, "expected a pixel data fragment")
            if offset + length > len(self.data):
                raise self.fail(offset, f"pixel data fragment declares {length} bytes (truncated)")
            offset += length


def check_dataset_encoding(
    dataset_bytes: bytes, transfer_syntax_uid: str, wanted: frozenset[int] = frozenset()
) -> dict[int, bytes]:
    """Raise :class:`DatasetError` when the encoded dataset (no file meta) is not whole.

    Returns the raw values of the ``wanted`` top-level elements (tags as ``0xGGGGEEEE``), so
    the one pass that checks the encoding also reads the attributes the node needs.
    """
    data = dataset_bytes
    implicit = transfer_syntax_uid == IMPLICIT_VR_LITTLE_ENDIAN
    little_endian = transfer_syntax_uid != EXPLICIT_VR_BIG_ENDIAN
    if transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        try:
            data = zlib.decompress(dataset_bytes, wbits=-zlib.MAX_WBITS)
        except zlib.error as error:
            raise DatasetError(f"deflated dataset does not inflate: {error}") from None
    if not data:
        raise DatasetError("empty dataset")
    walker = _Walker(data, implicit, little_endian, wanted)
    walker.elements(0, len(data), 0)
    return walker.values


def sequence_items(
    sequence_bytes: bytes, transfer_syntax_uid: str, wanted: frozenset[int]
) -> list[dict[int, bytes]]:
    """The ``wanted`` elements of each item of a sequence value that
    :func:`check_dataset_encoding` returned (already checked, and inflated when deflated).

    Nested sequences come back as raw values too, so a caller can descend one level at a time.
    """
    implicit = transfer_syntax_uid == IMPLICIT_VR_LITTLE_ENDIAN
    little_endian = transfer_syntax_uid != EXPLICIT_VR_BIG_ENDIAN
    walker = _Walker(sequence_bytes, implicit, little_endian, wanted)
    items: list[dict[int, bytes]] = []
    offset = 0
    while offset + 8 <= len(sequence_bytes):
        tag = walker.read_tag(offset)
        length = walker.u32.unpack_from(sequence_bytes, offset + 4)[0]
        offset += 8
        if tag == SEQUENCE_DELIMITATION:
            break
        if tag != ITEM:
            raise walker.fail(offset - 8, "expected an item inside a sequence")
        walker.values = {}
        offset = walker.item_body(offset, length, 0)
        items.append(walker.values)
    return items
