"""MLLP framing (HL7 v2 Minimal Lower Layer Protocol, release 2): frames in and out (pure).

A frame is ``<VT> message <FS><CR>``. :class:`FrameDecoder` is fed whatever the socket
returned and hands back complete messages; it never blocks and never touches a socket, so the
transport (``integrations.hl7.mllp``) only moves bytes.
"""

from __future__ import annotations

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
TRAILER = END_BLOCK + CARRIAGE_RETURN


class FramingError(ValueError):
    """The byte stream does not follow MLLP (junk outside a frame, frame too large)."""


def frame(message: bytes) -> bytes:
    """Wrap one encoded message in an MLLP block."""
    if START_BLOCK in message or END_BLOCK in message:
        raise FramingError("an HL7 message must not contain the MLLP block characters")
    return START_BLOCK + message + TRAILER


class FrameDecoder:
    """Incremental MLLP decoder: ``feed(bytes)`` returns the messages completed by them.

    Whitespace between frames is ignored (some senders add a newline after ``<FS><CR>``);
    any other byte outside a frame, or a frame over ``max_message_bytes``, raises
    :class:`FramingError` and the connection should be closed.
    """

    def __init__(self, max_message_bytes: int = 1024 * 1024) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._in_frame = False

    @property
    def pending(self) -> int:
        """Bytes received of a message not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        messages: list[bytes] = []
        view = memoryview(data)
        position = 0
        while position < len(view):
            if not self._in_frame:
                start = data.find(START_BLOCK, position)
                junk = bytes(view[position : len(view) if start < 0 else start])
                if junk.strip():
                    raise FramingError(f"{len(junk)} bytes outside an MLLP frame")
                if start < 0:
                    return messages
                self._in_frame = True
                position = start + 1
                continue
            end = data.find(END_BLOCK, position)
            if end < 0:
                self._buffer += view[position:]
                self._check_size()
                return messages
            self._buffer += view[position:end]
            self._check_size()
            messages.append(bytes(self._buffer))
            self._buffer.clear()
            self._in_frame = False
            position = end + 1
            if position < len(view) and view[position : position + 1] == CARRIAGE_RETURN:
                position += 1
        return messages

    def _check_size(self) -> None:
        if len(self._buffer) > self.max_message_bytes:
            raise FramingError(f"message larger than {self.max_message_bytes} bytes")
