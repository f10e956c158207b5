"""What the cross-sectional analyzers (brain MRI, head CT) share: series selection, slice
ranking and per-slice heatmaps (pure).

A study's series are grouped, each checked (intended modality and body part, not a
localizer, enough slices, plus what the analyzer adds) and prepared as a stack of 2.5D
inputs; a series that cannot be used is skipped with its reason, and a study with no usable
series is not analysable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from pydicom import Dataset

from models.analyzers.base import BaseAnalyzer, Skipped, nothing_to_analyse
from models.analyzers.volume import PreparedSeries, prepare_series, series_problem
from models.package import LabelSpec
from models.preprocess import NotAnalysable, group_by_series, image_reference
from models.results import Heatmap

MAX_REFERENCED_SLICES = 12


def rank_slices(
    probabilities: np.ndarray, threshold: float, fallback: int
) -> tuple[list[int], list[int]]:
    """Slice indices from the most probable down, and the slices a finding references: those
    at or above ``threshold`` (at most :data:`MAX_REFERENCED_SLICES`), else the top ``fallback``."""
    ranked = [int(index) for index in np.argsort(-probabilities)]
    above = [index for index in ranked if probabilities[index] >= threshold]
    return ranked, above[:MAX_REFERENCED_SLICES] or ranked[:fallback]


def series_summary(series: PreparedSeries) -> dict[str, Any]:
    return {
        "series_instance_uid": series.series_instance_uid,
        "slices": len(series.frames),
        "slice_spacing_mm": round(series.stack.spacing, 3),
    }


class SeriesAnalyzer(BaseAnalyzer):
    """An analyzer that reads whole axial series slice by slice."""

    minimum_slices: ClassVar[int] = 3
    domain_unit: ClassVar[str] = "series"
    series_name: ClassVar[str] = "series"  # in the refusal: "no {series_name} to analyse"

    def series_header_problem(self, members: Sequence[Dataset]) -> str | None:
        """A reason beyond the common ones to leave this series out, or None."""
        return None

    def prepare_one(self, members: list[Dataset]) -> PreparedSeries:
        return prepare_series(members, self.manifest.input)

    def members_problem(self, members: list[Dataset]) -> str | None:
        """A header-level reason to leave the series out (modality, body part, localizer,
        slice count, what the analyzer adds), or None."""
        return (
            self.header_problem(members[0])
            or series_problem(members, self.minimum_slices)
            or self.series_header_problem(members)
        )

    def try_prepare(self, members: list[Dataset]) -> PreparedSeries | Skipped:
        """The prepared series, or why it was left out."""
        problem = self.members_problem(members)
        if problem is None:
            try:
                return self.prepare_one(members)
            except NotAnalysable as reason:
                problem = reason.reason
        return Skipped(image_reference(members[0]), problem)

    def prepare(self, datasets: list[Dataset]) -> tuple[list[PreparedSeries], list[Skipped]]:
        prepared: list[PreparedSeries] = []
        skipped: list[Skipped] = []
        for members in group_by_series(datasets).values():
            outcome = self.try_prepare(members)
            if isinstance(outcome, Skipped):
                skipped.append(outcome)
            else:
                prepared.append(outcome)
        return prepared, skipped

    def usable_series(self, datasets: list[Dataset]) -> tuple[list[PreparedSeries], list[Skipped]]:
        """:meth:`prepare`, refusing the study when no series is usable."""
        series, skipped = self.prepare(datasets)
        if not series:
            raise nothing_to_analyse(self.series_name, skipped)
        return series, skipped

    def slice_heatmaps(
        self, series: PreparedSeries, label: LabelSpec, slices: Sequence[int]
    ) -> list[Heatmap]:
        """Grad-CAM for ``label`` on each of ``slices``, on the slice's full image."""
        heatmaps = []
        for index in slices:
            maps = self.gradcam(series.inputs[index : index + 1], [label])
            heatmaps.append(
                Heatmap(
                    label.name,
                    series.frames[index].reference,
                    series.geometry.to_image(maps[label.name][0]),
                )
            )
        return heatmaps
