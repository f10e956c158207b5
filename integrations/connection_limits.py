"""Which connections a listener admits: per-source and total limits, unproven ones give way (pure).

No sockets and no clock here: callers say when a connection is proven or gone.

A connection is *unproven* until it has shown it speaks the protocol (a complete
A-ASSOCIATE-RQ for DICOM, a first whole frame for MLLP). When a source or the listener is
full, the newcomer takes the place of the oldest unproven connection (from the same source
when that source is full) rather than being refused: idle sockets opened by a scanner or a
broken client can then never lock a real sender out, because a real sender proves itself
within milliseconds of connecting. Only when every connection that holds a place is proven
is the newcomer refused.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(eq=False)
class Slot:
    """One admitted connection. ``close`` ends it (called, outside any lock, on eviction)."""

    host: str
    close: Callable[[], None]
    proven: bool = False
    released: bool = False
    # Why the listener ended it, once it did ("evicted", "negotiation timeout", ...).
    ended_by_listener: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def end(self, reason: str) -> bool:
        """Mark that the listener ended this connection; True the first time only, so each
        connection is logged and recorded once however many paths notice its end."""
        with self.lock:
            if self.ended_by_listener:
                return False
            self.ended_by_listener = reason
            return True


@dataclass(frozen=True)
class Admission:
    slot: Slot | None  # None: refused
    evicted: Slot | None  # an unproven connection that gave up its place, to close
    reason: str = ""  # why refused


class ConnectionLimiter:
    """Thread-safe counts of the connections a listener holds."""

    def __init__(self, *, per_source: int, max_unproven: int, max_total: int | None = None) -> None:
        self.per_source = per_source
        self.max_unproven = max_unproven
        self.max_total = max_total
        self._lock = threading.Lock()
        self._by_host: dict[str, list[Slot]] = {}
        self._unproven: OrderedDict[int, Slot] = OrderedDict()  # oldest first
        self._total = 0

    def admit(self, host: str, close: Callable[[], None]) -> Admission:
        with self._lock:
            live = self._by_host.setdefault(host, [])
            victim: Slot | None = None
            if len(live) >= self.per_source:
                victim = next((slot for slot in live if not slot.proven), None)
                if victim is None:
                    return Admission(
                        None, None, f"{len(live)} connections open from {host} (the limit)"
                    )
            elif (self.max_total is not None and self._total >= self.max_total) or len(
                self._unproven
            ) >= self.max_unproven:
                victim = next(iter(self._unproven.values()), None)
                if victim is None:
                    return Admission(None, None, f"{self._total} connections open (the limit)")
            if victim is not None:
                self._remove(victim)
            slot = Slot(host, close)
            live.append(slot)
            self._unproven[id(slot)] = slot
            self._total += 1
            return Admission(slot, victim)

    def prove(self, slot: Slot) -> None:
        with self._lock:
            if not slot.released and not slot.proven:
                slot.proven = True
                self._unproven.pop(id(slot), None)

    def release(self, slot: Slot) -> None:
        """The connection is gone: its place is free (idempotent)."""
        with self._lock:
            if not slot.released:
                self._remove(slot)

    def counts(self) -> tuple[int, int]:
        """(connections held, of which unproven)."""
        with self._lock:
            return self._total, len(self._unproven)

    def unproven(self) -> list[Slot]:
        with self._lock:
            return list(self._unproven.values())

    def _remove(self, slot: Slot) -> None:
        slot.released = True
        self._unproven.pop(id(slot), None)
        live = self._by_host.get(slot.host, [])
        if slot in live:
            live.remove(slot)
        if not live:
            self._by_host.pop(slot.host, None)
        self._total -= 1
