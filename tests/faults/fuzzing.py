"""How long the fuzz harnesses run, and the byte mutations they share (test helper).

``make test`` runs every ``tests/faults/test_fuzz_*.py`` harness for a bounded number of
examples (a few seconds each); ``make fuzz`` sets ``FUZZ_EXAMPLES`` to run each for
many more. A crash found either way becomes an ``@example`` (or a test of its own) beside the
harness, with the fix, so it is replayed on every run.
"""

from __future__ import annotations

import os
import struct

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ_EXAMPLES_VARIABLE = "FUZZ_EXAMPLES"  # not PACSFLOW_*: those must be settings


def fuzz_settings(examples: int) -> settings:
    """``examples`` in ``make test``; ``$FUZZ_EXAMPLES`` when set (``make fuzz``).

    No deadline: the machine is shared and loaded, and the harnesses look for exceptions and
    broken properties, not for slow examples."""
    wanted = int(os.environ.get(FUZZ_EXAMPLES_VARIABLE, "0") or 0)
    return settings(
        max_examples=wanted or examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=not wanted,  # make test: the same examples on every run
    )


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """One of ``seeds`` with a few structural mutations: flipped bytes, a length field
    overwritten with a boundary value, a cut, an inserted or deleted span, a splice."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "length", "truncate", "insert", "delete", "splice"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "length":
            width = draw(st.sampled_from([2, 4]))
            value = draw(
                st.one_of(
                    st.sampled_from([0, 1, 2, 0x7F, 0xFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFE]),
                    st.integers(0, 2 ** (8 * width) - 1),
                )
            )
            value &= 2 ** (8 * width) - 1
            order = draw(st.sampled_from("<>"))
            data[at : at + width] = struct.pack(order + ("H" if width == 2 else "I"), value)
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, max(0, len(other) - 1)))
            data[at:] = other[start:]
    return bytes(data)
