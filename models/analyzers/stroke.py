"""What the two acute stroke analyzers share: infarct voxels, volume, ASPECTS-style regions (pure).

The infarct is measured from the images on the slices the network flags (and their
neighbours): the voxels that meet the modality's rule (CT: 12-24 HU inside the cranial
cavity after a 5x5 median; MR: ADC dark and b=1000 bright), in connected groups of a
minimum size. Volume = voxels x voxel volume: an estimate, stated as such.

The regional output follows ASPECTS: ten middle cerebral artery regions per side (caudate,
lentiform, internal capsule, insula, M1-M3 at the ganglionic level; M4-M6 above it), each
scored affected when at least a fifth of it is infarct; the side's score is 10 minus its
affected regions. The regions come from a fixed atlas in coordinates normalised to each
slice's brain (centre and half-extents) and to the widest brain slice's height, not from a
registered atlas: an ASPECTS-style approximation, never the neurologist's score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from models.analyzers.series import SeriesAnalyzer, rank_slices
from models.analyzers.volume import PreparedSeries
from models.codes import ASPECTS, MILLILITER, SCORE, VOLUME
from models.labels import ISCHEMIC_STROKE
from models.results import Finding, Heatmap, Measurement

GANGLIONIC_MM = (-12.0, 12.0)  # slice height from the widest brain slice
SUPRAGANGLIONIC_MM = (12.0, 40.0)
AFFECTED_FRACTION = 0.2
HEATMAP_SLICES = 3
TOP_K = 2

Predicate = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (lateral, anteroposterior) -> mask
GANGLIONIC_REGIONS: tuple[tuple[str, Predicate], ...] = (
    ("C", lambda x, y: (x < 0.25) & (y >= -0.45) & (y < -0.1)),
    ("IC", lambda x, y: (x < 0.25) & (y >= -0.1) & (y < 0.2)),
    ("L", lambda x, y: (x >= 0.25) & (x < 0.45) & (y >= -0.35) & (y < 0.2)),
    ("I", lambda x, y: (x >= 0.45) & (x < 0.6) & (y >= -0.35) & (y < 0.2)),
    ("M1", lambda x, y: (x >= 0.45) & (y >= -0.75) & (y < -0.35)),
    ("M2", lambda x, y: (x >= 0.6) & (y >= -0.35) & (y < 0.25)),
    ("M3", lambda x, y: (x >= 0.45) & (y >= 0.25) & (y < 0.7)),
)
SUPRAGANGLIONIC_REGIONS: tuple[tuple[str, Predicate], ...] = (
    ("M4", lambda x, y: (x >= 0.35) & (y >= -0.75) & (y < -0.2)),
    ("M5", lambda x, y: (x >= 0.35) & (y >= -0.2) & (y < 0.25)),
    ("M6", lambda x, y: (x >= 0.35) & (y >= 0.25) & (y < 0.7)),
)
REGIONS = tuple(name for name, _ in (*GANGLIONIC_REGIONS, *SUPRAGANGLIONIC_REGIONS))


@dataclass(frozen=True)
class Aspects:
    """Per side (patient "left" / "right"): score and the affected regions."""

    scores: dict[str, int]
    affected: dict[str, list[str]]

    @property
    def worst_side(self) -> str:
        return min(self.scores, key=lambda side: (self.scores[side], side))

    def to_json(self) -> dict[str, Any]:
        return {"scores": self.scores, "affected_regions": self.affected}


def keep_groups(mask: np.ndarray, minimum: int) -> np.ndarray:
    """``mask`` without its connected groups (per slice) smaller than ``minimum`` voxels."""
    kept = np.zeros_like(mask)
    for index, plane in enumerate(mask):
        labels, count = ndimage.label(plane)
        if count:
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            kept[index] = sizes[labels] >= minimum
    return kept


def flagged_slices(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    flagged = probabilities >= threshold
    return ndimage.binary_dilation(flagged, iterations=1) if flagged.any() else flagged


def volume_ml(mask: np.ndarray, pixel_spacing: tuple[float, float], slice_spacing: float) -> float:
    return float(mask.sum()) * pixel_spacing[0] * pixel_spacing[1] * slice_spacing / 1000.0


def aspects(series: PreparedSeries, brain: np.ndarray, infarct: np.ndarray) -> Aspects:
    """ASPECTS-style scores from per-slice brain and infarct masks of ``series``."""
    heights = np.array([frame.position[2] if frame.position else 0.0 for frame in series.frames])
    orientation = series.frames[0].orientation
    columns_to_left = orientation is None or orientation[0] >= 0  # +x in DICOM is patient left
    areas = brain.reshape(len(brain), -1).sum(axis=1)
    reference = float(heights[int(np.argmax(areas))]) if areas.any() else 0.0
    totals: dict[tuple[str, str], list[int]] = {}
    for index, plane in enumerate(brain):
        if not plane.any():
            continue
        relative = float(heights[index]) - reference
        if GANGLIONIC_MM[0] <= relative < GANGLIONIC_MM[1]:
            regions = GANGLIONIC_REGIONS
        elif SUPRAGANGLIONIC_MM[0] <= relative < SUPRAGANGLIONIC_MM[1]:
            regions = SUPRAGANGLIONIC_REGIONS
        else:
            continue
        rows, columns = np.nonzero(plane)
        centre_row, centre_column = rows.mean(), columns.mean()
        half_rows = max(1.0, (rows.max() - rows.min()) / 2)
        half_columns = max(1.0, (columns.max() - columns.min()) / 2)
        grid_rows, grid_columns = np.indices(plane.shape)
        across = (grid_columns - centre_column) / half_columns
        across = across if columns_to_left else -across  # + : patient left
        along = (grid_rows - centre_row) / half_rows  # + : posterior
        for side, sign in (("left", 1.0), ("right", -1.0)):
            lateral = sign * across
            hemisphere = plane & (lateral > 0)
            for name, predicate in regions:
                region = hemisphere & predicate(lateral, along)
                counts = totals.setdefault((side, name), [0, 0])
                counts[0] += int(region.sum())
                counts[1] += int((region & infarct[index]).sum())
    affected: dict[str, list[str]] = {"left": [], "right": []}
    for (side, name), (size, hit) in totals.items():
        if size and hit / size >= AFFECTED_FRACTION:
            affected[side].append(name)
    for side in affected:
        affected[side].sort(key=REGIONS.index)
    return Aspects({side: 10 - len(names) for side, names in affected.items()}, affected)


def stroke_findings(
    analyzer: SeriesAnalyzer,
    series: PreparedSeries,
    per_slice: dict[str, np.ndarray],
    infarct: np.ndarray,
    regional: Aspects,
    labels: Sequence[str],
) -> tuple[list[Finding], list[Heatmap], dict[str, float]]:
    """Findings (the stroke one with its volume and ASPECTS), heatmaps, series probabilities."""
    frame = series.frames[0]
    assert frame.pixel_spacing is not None
    volume = volume_ml(infarct, frame.pixel_spacing, series.stack.spacing)
    findings: list[Finding] = []
    heatmaps: list[Heatmap] = []
    probabilities: dict[str, float] = {}
    for name in labels:
        label = analyzer.manifest.label(name)
        probability = float(np.mean(np.sort(per_slice[name])[-TOP_K:]))
        probabilities[name] = probability
        ranked, referenced = rank_slices(per_slice[name], label.threshold, TOP_K)
        measurements = []
        present = probability >= label.threshold
        if name == ISCHEMIC_STROKE and present:
            measurements = [
                Measurement(VOLUME, round(volume, 2), MILLILITER),
                Measurement(ASPECTS, float(regional.scores[regional.worst_side]), SCORE),
            ]
        findings.append(
            analyzer.finding(
                label, probability, [series.frames[i].reference for i in referenced], measurements
            )
        )
        if present:
            count = HEATMAP_SLICES if name == ISCHEMIC_STROKE else 1
            heatmaps.extend(analyzer.slice_heatmaps(series, label, ranked[:count]))
    probabilities["infarct_volume_ml"] = round(volume, 2)
    return findings, heatmaps, probabilities
