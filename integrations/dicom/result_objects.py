"""Every result object of one analysis, chosen by the site's output profile (pure).

The one entry point the ``build_results`` task calls. It builds in memory; writing and sending
happen elsewhere. The SR always comes first (the PACS should have the findings even if an
overlay fails to store); the overlays follow in the order the profile lists its carriers.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pydicom import Dataset

from integrations.dicom.carrier_checks import carrier_obstacles
from integrations.dicom.gsps import build_presentation_states
from integrations.dicom.parametric_map import build_parametric_maps
from integrations.dicom.priors import parse_date
from integrations.dicom.result_common import (
    ResultKind,
    ResultObject,
    SkippedCarrier,
    study_instance_uid_of,
)
from integrations.dicom.secondary_capture import build_secondary_captures
from integrations.dicom.segmentation import build_segmentations
from integrations.dicom.sr import PredecessorReport, build_measurement_report
from integrations.settings import ResultsSettings, Settings
from models.interval_change import (
    NO_PRIOR_AVAILABLE,
    PriorComparison,
    no_prior,
    prior_without_measurements,
)
from models.results import AnalysisResult

__all__ = [
    "PredecessorReport",
    "PriorReference",
    "ResultKind",
    "ResultObject",
    "ResultSet",
    "SkippedCarrier",
    "as_prior_comparison",
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


class PriorReference(Protocol):
    """What the flow knows about the prior when it did not compare (``tasks.context.PriorRef``)."""

    @property
    def available(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def study_instance_uid(self) -> str: ...
    @property
    def study_date(self) -> str: ...
    @property
    def accession_number(self) -> str: ...


_REFERENCE_FIELDS = ("available", "reason", "study_instance_uid", "study_date", "accession_number")


def as_prior_comparison(prior: PriorComparison | PriorReference | None) -> PriorComparison | None:
    """A comparison outcome from either a comparison or a bare reference to the prior."""
    if prior is None or isinstance(prior, PriorComparison):
        return prior
    if all(hasattr(prior, name) for name in _REFERENCE_FIELDS):
        if not prior.available:
            return no_prior(prior.reason or NO_PRIOR_AVAILABLE)
        return prior_without_measurements(
            prior.study_instance_uid, parse_date(prior.study_date), prior.accession_number
        )
    raise TypeError(
        "prior must be a PriorComparison, a prior reference "
        f"({', '.join(_REFERENCE_FIELDS)}) or None"
    )


def build_result_objects(
    analysis: AnalysisResult,
    sources: Sequence[Dataset],
    *,
    profile: ResultsSettings | None = None,
    settings: Settings | None = None,
    generation: int = 1,
    prior: PriorComparison | PriorReference | None = None,
    now: datetime.datetime | None = None,
    part: Literal["all", "report", "overlays"] = "all",
    predecessor: PredecessorReport | None = None,
    final: bool = True,
) -> ResultSet:
    """The SR and the overlays the profile's carriers ask for, for ``analysis`` of one study.

    ``profile``: the ``[results]`` section (or pass the whole ``settings``; exactly one).
    ``sources``: the study's images the analyzer was given, with pixel data when overlays are
    wanted (GSPS windows, Secondary Capture pictures). ``generation``: 1 for the first run of a
    study, +1 each time the study is re-opened (Instance Numbers follow it). UIDs follow the
    inputs (:mod:`integrations.dicom.result_inputs`): the same inputs give the same UIDs.
    ``prior``: the outcome of prior comparison (a PriorComparison), or just the reference to
    the prior the flow found (then the SR names the prior without measurements), written into
    the SR. ``now``: the creation time stamped on every object (defaults to the current time;
    pass a fixed one, e.g. the study's close time, for byte-identical reruns).
    ``part``: ``report`` builds the SR alone (the flow stores it first, so findings reach the
    PACS without waiting for overlays), ``overlays`` the other carriers alone, ``all`` both.
    ``predecessor``: the SR the new SR replaces. ``final``: the SR's Preliminary Flag.

    Each overlay carrier is built on its own: one the source headers cannot have is skipped
    with the reason the SR states (:mod:`integrations.dicom.carrier_checks`), and one whose
    builder fails anyway is skipped with the error, so no carrier costs another one.
    """
    if (profile is None) == (settings is None):
        raise TypeError("pass exactly one of profile (the [results] section) or settings")
    if settings is not None:
        if not isinstance(settings, Settings):
            raise TypeError("settings must be the pacsflow Settings")
        profile = settings.results
    if not isinstance(profile, ResultsSettings):
        raise TypeError("profile must be a ResultsSettings (the [results] settings section)")
    comparison = as_prior_comparison(prior)
    study_instance_uid_of(sources)
    now = now or datetime.datetime.now()
    common = {"profile": profile, "generation": generation, "now": now}
    obstacles = carrier_obstacles(analysis, sources, profile)
    objects: list[ResultObject] = []
    if part in ("all", "report"):
        objects.append(
            ResultObject(
                ResultKind.SR,
                build_measurement_report(
                    analysis,
                    sources,
                    prior=comparison,
                    predecessor=predecessor,
                    not_produced=obstacles,
                    final=final,
                    **common,  # type: ignore[arg-type]
                ),
            )
        )
    if part == "report":
        return ResultSet(tuple(objects), ())
    skipped: list[SkippedCarrier] = []
    for carrier in profile.carriers:
        kind = ResultKind(carrier)
        if kind == ResultKind.SR:
            continue
        blocked = [item for item in obstacles if item.kind == kind]
        skipped.extend(blocked)
        if any(not item.series_instance_uid for item in blocked):
            continue
        blocked_series = {item.series_instance_uid for item in blocked}
        feasible = dataclasses.replace(
            analysis,
            heatmaps=tuple(
                heatmap
                for heatmap in analysis.heatmaps
                if heatmap.image.series_instance_uid not in blocked_series
            ),
        )
        if not feasible.heatmaps:
            continue
        try:
            datasets, not_built = _build_carrier(kind, feasible, sources, common)
        except _BUILD_ERRORS as error:
            skipped.append(SkippedCarrier(kind, f"could not be built: {error}"))
            continue
        skipped.extend(not_built)
        objects.extend(ResultObject(kind, dataset) for dataset in datasets)
    return ResultSet(tuple(objects), tuple(skipped))


# What a builder raises on a source it cannot represent (highdicom raises all of these).
_BUILD_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError, RuntimeError)


def _build_carrier(
    kind: ResultKind,
    analysis: AnalysisResult,
    sources: Sequence[Dataset],
    common: dict[str, object],
) -> tuple[Sequence[Dataset], Sequence[SkippedCarrier]]:
    if kind == ResultKind.GSPS:
        return build_presentation_states(analysis, sources, **common), ()  # type: ignore[arg-type]
    if kind == ResultKind.SECONDARY_CAPTURE:
        return build_secondary_captures(analysis, sources, **common), ()  # type: ignore[arg-type]
    if kind == ResultKind.SEGMENTATION:
        return build_segmentations(analysis, sources, **common)  # type: ignore[arg-type]
    return build_parametric_maps(analysis, sources, **common)  # type: ignore[arg-type]
