"""MLLP framing: frames split anywhere, several per read, junk and oversize refused."""

from __future__ import annotations

import pytest

from integrations.hl7.framing import FrameDecoder, FramingError, frame

MESSAGES = [b"MSH|^~\\&|A\rPID|1\r", b"MSH|^~\\&|B\r", "MSH|^~\\&|Ü\r".encode()]


def test_frame_wraps_in_vt_fs_cr() -> None:
    assert frame(b"X") == b"\x0bX\x1c\r"
    with pytest.raises(FramingError):
        frame(b"bad\x1cbyte")


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
def test_decoder_reassembles_whatever_the_chunking(chunk: int) -> None:
    stream = b"".join(frame(message) for message in MESSAGES) + b"\n"
    decoder = FrameDecoder()
    found = []
    for start in range(0, len(stream), chunk):
        found.extend(decoder.feed(stream[start : start + chunk]))
    assert found == MESSAGES
    assert decoder.pending == 0


def test_junk_outside_a_frame_is_refused() -> None:
    with pytest.raises(FramingError, match="outside"):
        FrameDecoder().feed(b"GET / HTTP/1.1\r\n")


def test_oversized_message_is_refused() -> None:
    decoder = FrameDecoder(max_message_bytes=10)
    with pytest.raises(FramingError, match="larger"):
        decoder.feed(b"\x0b" + b"x" * 11)
