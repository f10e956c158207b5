"""Every result object of one analysis, chosen by the site's output profile (pure).

The one entry point the ``build_results`` task calls. It builds in memory; writing and sending
happen elsewhere. The SR always comes first (the PACS should have the findings even if an
overlay fails to store); the overlays follow in the order the profile lists its carriers.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pydicom import Dataset

from integrations.dicom.gsps import build_presentation_states
from integrations.dicom.parametric_map import build_parametric_maps
from integrations.dicom.result_common import (
    ResultKind,
    ResultObject,
    SkippedCarrier,
    study_instance_uid_of,
)
from integrations.dicom.secondary_capture import build_secondary_captures
from integrations.dicom.segmentation import build_segmentations
from integrations.dicom.sr import build_measurement_report
from integrations.settings import ResultsSettings
from models.interval_change import PriorComparison
from models.results import AnalysisResult

__all__ = [
    "ResultKind",
    "ResultObject",
    "ResultSet",
    "SkippedCarrier",
    "build_result_objects",
]


@dataclass(frozen=True)
class ResultSet:
    """The objects built for one analysis, and the carriers the profile wanted but could not have."""

    objects: tuple[ResultObject, ...]
    skipped: tuple[SkippedCarrier, ...] = ()

    def __iter__(self) -> Iterator[ResultObject]:
        return iter(self.objects)

    def __len__(self) -> int:
        return len(self.objects)

    def of_kind(self, kind: ResultKind) -> list[ResultObject]:
        return [item for item in self.objects if item.kind == kind]

    @property
    def sr(self) -> ResultObject:
        return self.of_kind(ResultKind.SR)[0]


def build_result_objects(
    analysis: AnalysisResult,
    sources: Sequence[Dataset],
    *,
    profile: ResultsSettings,
    generation: int = 1,
    prior: PriorComparison | None = None,
    now: datetime.datetime | None = None,
) -> ResultSet:
    """The SR and the overlays ``profile.carriers`` ask for, for ``analysis`` of one study.

    ``sources``: the study's images the analyzer was given, with pixel data when overlays are
    wanted (GSPS windows, Secondary Capture pictures). ``generation``: 1 for the first run of a
    study, +1 each time the study is re-opened; reruns of one generation give identical UIDs.
    ``prior``: the outcome of prior comparison, written into the SR. ``now``: the creation time
    stamped on every object (defaults to the current time).
    """
    if not isinstance(profile, ResultsSettings):
        raise TypeError("profile must be a ResultsSettings (the [results] settings section)")
    study_instance_uid_of(sources)
    now = now or datetime.datetime.now()
    common = {"profile": profile, "generation": generation, "now": now}
    objects = [
        ResultObject(
            ResultKind.SR,
            build_measurement_report(analysis, sources, prior=prior, **common),  # type: ignore[arg-type]
        )
    ]
    skipped: list[SkippedCarrier] = []
    if not analysis.heatmaps:
        skipped.extend(
            SkippedCarrier(ResultKind(carrier), "the analysis has no heatmaps")
            for carrier in profile.carriers
            if carrier != ResultKind.SR.value
        )
        return ResultSet(tuple(objects), tuple(skipped))
    for carrier in profile.carriers:
        kind = ResultKind(carrier)
        datasets: Sequence[Dataset]
        if kind == ResultKind.SR:
            continue
        if kind == ResultKind.GSPS:
            datasets = build_presentation_states(analysis, sources, **common)  # type: ignore[arg-type]
        elif kind == ResultKind.SECONDARY_CAPTURE:
            datasets = build_secondary_captures(analysis, sources, **common)  # type: ignore[arg-type]
        elif kind == ResultKind.SEGMENTATION:
            datasets, not_built = build_segmentations(analysis, sources, **common)  # type: ignore[arg-type]
            skipped.extend(not_built)
        else:
            datasets, not_built = build_parametric_maps(analysis, sources, **common)  # type: ignore[arg-type]
            skipped.extend(not_built)
        objects.extend(ResultObject(kind, dataset) for dataset in datasets)
    return ResultSet(tuple(objects), tuple(skipped))
