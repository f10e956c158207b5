"""Whether the node's storage has room for new studies, against a free-space watermark (I/O).

Asked once per association request (one ``statvfs``, microseconds). Crossing the watermark
downwards calls ``on_low`` once, and coming back above it ``on_recovered`` once, however many
associations ask in between: one alert per episode, never one per sender retry.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path


class DiskWatermark:
    def __init__(
        self,
        path: Path,
        min_free_percent: float,
        *,
        on_low: Callable[[float], None],
        on_recovered: Callable[[float], None],
    ) -> None:
        self.path = path
        self.min_free_percent = min_free_percent
        self.on_low = on_low
        self.on_recovered = on_recovered
        self._low = False
        self._lock = threading.Lock()

    def free_percent(self) -> float:
        folder = self.path
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent  # the spool may not exist before the first instance
        usage = shutil.disk_usage(folder)
        return 100.0 * usage.free / usage.total if usage.total else 0.0

    def room_for_new_studies(self) -> tuple[bool, float]:
        """(whether free space is at or above the watermark, the free percent)."""
        if self.min_free_percent <= 0:
            return True, 100.0
        try:
            free = self.free_percent()
        except OSError:
            return True, 100.0  # an unreadable filesystem fails on the write, with 0xA700
        low = free < self.min_free_percent
        with self._lock:
            changed = low != self._low
            self._low = low
        if changed:
            (self.on_low if low else self.on_recovered)(free)
        return not low, free
