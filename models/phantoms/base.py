"""Shared pieces of the phantom generators: ground truth, identities, drawing (pure).

A :class:`PhantomStudy` is a list of real pydicom Datasets (pixel data included) plus what is
true about them: the set of labels present and, per label, a lesion mask for every image
(and frame) it shows on. Identities (patient, accession, UIDs) are derived from the seed, so
the same seed always gives the same study with the same UIDs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
from pydicom import Dataset

ImageKey = tuple[str, int | None]  # (SOP Instance UID, frame number or None)


@dataclass
class PhantomStudy:
    """Generated study with its ground truth."""

    kind: str  # the analyzer it is meant for: "chest-xray", "msk-fracture", ...
    datasets: list[Dataset]
    labels: frozenset[str]
    masks: dict[str, dict[ImageKey, np.ndarray]] = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)  # e.g. true volume in mL

    @property
    def study_instance_uid(self) -> str:
        return str(self.datasets[0].StudyInstanceUID)

    @property
    def accession_number(self) -> str:
        return str(self.datasets[0].get("AccessionNumber", ""))

    def mask(
        self, label: str, sop_instance_uid: str, frame_number: int | None = None
    ) -> np.ndarray | None:
        return self.masks.get(label, {}).get((sop_instance_uid, frame_number))

    def add_mask(self, label: str, key: ImageKey, mask: np.ndarray) -> None:
        if mask.any():
            per_image = self.masks.setdefault(label, {})
            if key in per_image:
                per_image[key] = per_image[key] | mask
            else:
                per_image[key] = mask


@dataclass(frozen=True)
class StudyInfo:
    """Patient and study identity shared by every instance of a phantom study."""

    study_instance_uid: str
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    accession_number: str
    study_date: str
    study_time: str
    study_id: str
    study_description: str
    referring_physician_name: str = ""


_FAMILY = ("DOE", "ROE", "POE", "MOE", "LOE", "HOE", "SMITH", "JONES", "MILLER", "GARCIA")
_GIVEN = ("ALEX", "SAM", "KIM", "ROBIN", "JO", "ALI", "LEE", "NOOR", "MAX", "ARI")


def phantom_uid(*parts: object) -> str:
    """A 2.25 UUID-derived UID (PS3.5 B.2) that depends only on ``parts`` (same seed, same UID).

    128 bits of SHA-256 over the parts, printed in decimal after the 2.25 root.
    """
    text = "\x1f".join(["pacsflow-phantom", *map(str, parts)])
    return "2.25." + str(int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big"))


def study_info(
    kind: str,
    seed: int,
    *,
    description: str,
    patient_id: str | None = None,
    accession_number: str | None = None,
    study_date: str | None = None,
) -> StudyInfo:
    digest = int.from_bytes(hashlib.sha256(f"{kind}|{seed}".encode()).digest()[:8], "big")
    birth = date(1940, 1, 1) + timedelta(days=digest % (60 * 365))
    when = date(2025, 1, 1) + timedelta(days=(digest >> 20) % 365)
    return StudyInfo(
        study_instance_uid=phantom_uid(kind, seed, "study"),
        patient_id=patient_id or f"PH{digest % 10**8:08d}",
        patient_name=f"{_FAMILY[digest % 10]}^{_GIVEN[(digest >> 8) % 10]}",
        patient_birth_date=birth.strftime("%Y%m%d"),
        patient_sex="MF"[(digest >> 4) % 2],
        accession_number=accession_number or f"A{digest % 10**9:09d}",
        study_date=study_date or when.strftime("%Y%m%d"),
        study_time=f"{(digest >> 12) % 24:02d}{(digest >> 16) % 60:02d}00",
        study_id=str(1 + digest % 9999),
        study_description=description,
    )


def rng_for(kind: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, int.from_bytes(kind.encode()[:8].ljust(8, b"\0"), "big")])


def grid(rows: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pixel-centre coordinates: x in [0, 1) across, y in [0, 1) down."""
    y = (np.arange(rows, dtype=np.float32) + 0.5) / rows
    x = (np.arange(columns, dtype=np.float32) + 0.5) / columns
    return np.meshgrid(x, y)


def smoothstep(values: np.ndarray) -> np.ndarray:
    clipped = np.clip(values, 0.0, 1.0)
    return clipped * clipped * (3.0 - 2.0 * clipped)


def segment_distance(
    x: np.ndarray, y: np.ndarray, start: tuple[float, float], end: tuple[float, float]
) -> np.ndarray:
    """Distance from each point to the segment start-end (same units as the coordinates)."""
    sx, sy = start
    ex, ey = end
    dx, dy = ex - sx, ey - sy
    length_squared = dx * dx + dy * dy or 1e-12
    t = np.clip(((x - sx) * dx + (y - sy) * dy) / length_squared, 0.0, 1.0)
    return np.hypot(x - (sx + t * dx), y - (sy + t * dy))


def expand_implied(
    labels: Iterable[str], implications: dict[str, tuple[str, ...]]
) -> frozenset[str]:
    """Close a label set under "A implies B" rules (tension pneumothorax is a pneumothorax)."""
    result = set(labels)
    changed = True
    while changed:
        changed = False
        for label in list(result):
            for implied in implications.get(label, ()):
                if implied not in result:
                    result.add(implied)
                    changed = True
    return frozenset(result)
