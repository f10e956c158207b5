"""Prior studies: which earlier study to compare with, and its pacsflow SR (pure; the network goes through the caller's client).

The policy is pure (queries built, matches judged, the best prior chosen, reports picked);
the network goes through the caller's DICOM client (``integrations.dicom.scu.DicomClient``,
or anything with its ``find`` and ``move``), so this module opens no socket itself:

1. C-FIND at STUDY level: same Patient ID, study date within the look-back, same modality.
2. C-FIND at SERIES level for each candidate, newest first: modalities, body parts, and
   whether it holds an SR series (where a pacsflow report of that study would be).
3. The newest candidate with the current modality (and body part, when both are known) wins.
4. C-MOVE of that study to the node; the flow then reads pacsflow's SR from what arrived
   (:func:`latest_report`) and compares (``models.interval_change``).

A PACS that does not answer, refuses the move, or has no earlier study gives "no prior
available" with the reason; it is never an error, and it never delays escalation.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from pydicom import Dataset

from integrations.dicom.sr_reader import (
    ReportedAnalysis,
    is_pacsflow_report,
    read_measurement_report,
)
from integrations.errors import DatasetError, PeerError, TransientError
from integrations.settings import PriorsSettings
from models.interval_change import NO_PRIOR_AVAILABLE

REPORT_MODALITY: Final = "SR"


class QueryRetrieveClient(Protocol):
    """The part of :class:`integrations.dicom.scu.DicomClient` prior search needs."""

    def find(self, query: Dataset, *, study_instance_uid: str = "") -> list[Dataset]: ...

    def move(
        self, query: Dataset, destination_ae_title: str, *, study_instance_uid: str = ""
    ) -> object: ...


@dataclass(frozen=True)
class CurrentStudy:
    """What prior search needs to know about the study being analysed."""

    study_instance_uid: str
    patient_id: str
    study_date: datetime.date | None
    modality: str
    body_part: str = ""
    study_time: str = ""
    issuer_of_patient_id: str = ""

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> CurrentStudy:
        """From any image of the study (its header is enough)."""
        return cls(
            study_instance_uid=str(dataset.StudyInstanceUID),
            patient_id=_text(dataset, "PatientID"),
            study_date=parse_date(_text(dataset, "StudyDate")),
            modality=_text(dataset, "Modality").upper(),
            body_part=_text(dataset, "BodyPartExamined").upper(),
            study_time=_text(dataset, "StudyTime"),
            issuer_of_patient_id=_text(dataset, "IssuerOfPatientID"),
        )


@dataclass(frozen=True)
class PriorCandidate:
    """An earlier study of the patient as the PACS described it."""

    study_instance_uid: str
    study_date: datetime.date | None
    accession_number: str = ""
    study_time: str = ""
    study_description: str = ""
    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    report_series: tuple[str, ...] = ()  # SR series, where a pacsflow report would be
    issuer_of_patient_id: str = ""

    @property
    def has_report(self) -> bool:
        return bool(self.report_series)


@dataclass(frozen=True)
class PriorSearch:
    """The chosen prior, or why there is none."""

    prior: PriorCandidate | None
    reason: str = ""
    candidates: int = 0

    @property
    def available(self) -> bool:
        return self.prior is not None


@dataclass(frozen=True)
class PriorFetch:
    """The outcome of search and move: the prior now at the node, or why there is none."""

    search: PriorSearch
    moved: int = 0
    failed: int = 0
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.search.available and self.moved > 0 and not self.reason

    @property
    def prior(self) -> PriorCandidate | None:
        return self.search.prior if self.available else None


def not_available(why: str) -> str:
    return f"{NO_PRIOR_AVAILABLE}: {why}"


def study_query(
    current: CurrentStudy, settings: PriorsSettings, today: datetime.date | None = None
) -> Dataset:
    """STUDY-level C-FIND identifier: same patient, dates within the look-back, same modality."""
    if not current.patient_id:
        raise ValueError("current.patient_id is empty: priors are searched by Patient ID")
    end = current.study_date or today or datetime.date.today()
    start = end - datetime.timedelta(days=settings.lookback_days)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = current.patient_id
    query.IssuerOfPatientID = ""
    query.StudyInstanceUID = ""
    query.StudyDate = f"{start:%Y%m%d}-{end:%Y%m%d}"
    query.StudyTime = ""
    query.AccessionNumber = ""
    query.StudyDescription = ""
    query.ModalitiesInStudy = current.modality or ""
    return query


def series_query(study_instance_uid: str) -> Dataset:
    """SERIES-level C-FIND identifier: every series of one study, with modality and body part."""
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = study_instance_uid
    query.SeriesInstanceUID = ""
    query.Modality = ""
    query.BodyPartExamined = ""
    query.SeriesNumber = ""
    query.SeriesDescription = ""
    return query


def move_query(study_instance_uid: str) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_instance_uid
    return query


def candidate_from_match(match: Dataset) -> PriorCandidate | None:
    """A STUDY-level match as a candidate (None when it has no Study Instance UID)."""
    uid = _text(match, "StudyInstanceUID")
    if not uid:
        return None
    modalities = match.get("ModalitiesInStudy") or ()
    if isinstance(modalities, str):
        modalities = modalities.split("\\")
    return PriorCandidate(
        study_instance_uid=uid,
        study_date=parse_date(_text(match, "StudyDate")),
        accession_number=_text(match, "AccessionNumber"),
        study_time=_text(match, "StudyTime"),
        study_description=_text(match, "StudyDescription"),
        modalities=tuple(str(value).upper() for value in modalities if str(value)),
        issuer_of_patient_id=_text(match, "IssuerOfPatientID"),
    )


def with_series(candidate: PriorCandidate, series: Iterable[Dataset]) -> PriorCandidate:
    """The candidate completed with what its SERIES-level matches say."""
    modalities = list(candidate.modalities)
    body_parts: list[str] = []
    reports: list[str] = []
    for item in series:
        modality = _text(item, "Modality").upper()
        if modality and modality not in modalities:
            modalities.append(modality)
        body_part = _text(item, "BodyPartExamined").upper()
        if body_part and modality != REPORT_MODALITY and body_part not in body_parts:
            body_parts.append(body_part)
        if modality == REPORT_MODALITY and _text(item, "SeriesInstanceUID"):
            reports.append(_text(item, "SeriesInstanceUID"))
    return PriorCandidate(
        study_instance_uid=candidate.study_instance_uid,
        study_date=candidate.study_date,
        accession_number=candidate.accession_number,
        study_time=candidate.study_time,
        study_description=candidate.study_description,
        modalities=tuple(modalities),
        body_parts=tuple(body_parts),
        report_series=tuple(reports),
        issuer_of_patient_id=candidate.issuer_of_patient_id,
    )


def exclusion(
    current: CurrentStudy, candidate: PriorCandidate, settings: PriorsSettings
) -> str | None:
    """Why ``candidate`` cannot be the prior of ``current`` (None: it can)."""
    if candidate.study_instance_uid == current.study_instance_uid:
        return "the current study itself"
    if (
        current.issuer_of_patient_id
        and candidate.issuer_of_patient_id
        and current.issuer_of_patient_id != candidate.issuer_of_patient_id
    ):
        return "another issuer of Patient ID"
    if candidate.study_date is None:
        return "no study date"
    if current.study_date is not None:
        if candidate.study_date > current.study_date:
            return "later than the current study"
        if candidate.study_date == current.study_date and (
            not candidate.study_time
            or not current.study_time
            or candidate.study_time >= current.study_time
        ):
            return "not earlier than the current study"
        if (current.study_date - candidate.study_date).days > settings.lookback_days:
            return "older than the look-back"
    if current.modality and current.modality not in candidate.modalities:
        return f"no {current.modality} series"
    if (
        settings.same_body_part
        and current.body_part
        and candidate.body_parts
        and current.body_part not in candidate.body_parts
    ):
        return f"not {current.body_part}"
    return None


def newest_first(candidates: Iterable[PriorCandidate]) -> list[PriorCandidate]:
    return sorted(
        candidates,
        key=lambda c: (c.study_date or datetime.date.min, c.study_time),
        reverse=True,
    )


def choose_prior(
    current: CurrentStudy, candidates: Sequence[PriorCandidate], settings: PriorsSettings
) -> PriorSearch:
    """The newest eligible candidate, or "no prior available" with the reason."""
    eligible = [c for c in candidates if exclusion(current, c, settings) is None]
    if eligible:
        return PriorSearch(newest_first(eligible)[0], candidates=len(candidates))
    if not candidates:
        return PriorSearch(None, not_available("no earlier study of this patient"), 0)
    return PriorSearch(
        None,
        not_available(f"none of {len(candidates)} earlier studies matches"),
        len(candidates),
    )


def search_priors(
    client: QueryRetrieveClient, current: CurrentStudy, settings: PriorsSettings
) -> PriorSearch:
    """C-FIND STUDY then SERIES on the PACS; the best prior, or why there is none."""
    if not settings.enabled:
        return PriorSearch(None, not_available("prior comparison is switched off"))
    if not current.patient_id:
        return PriorSearch(None, not_available("the study has no Patient ID"))
    try:
        matches = client.find(
            study_query(current, settings), study_instance_uid=current.study_instance_uid
        )
        candidates = [
            candidate
            for candidate in (candidate_from_match(match) for match in matches)
            if candidate is not None and candidate.study_instance_uid != current.study_instance_uid
        ]
        # Judge on the study level first (dates); ask for series only of the remaining ones.
        preliminary = [
            candidate
            for candidate in newest_first(candidates)
            if exclusion(current, _without_modality_check(candidate, current), settings) is None
        ][: settings.max_candidates]
        detailed = [
            with_series(
                candidate,
                client.find(
                    series_query(candidate.study_instance_uid),
                    study_instance_uid=current.study_instance_uid,
                ),
            )
            for candidate in preliminary
        ]
    except (PeerError, TransientError) as error:
        return PriorSearch(None, not_available(f"PACS did not answer C-FIND ({error})"))
    search = choose_prior(current, detailed, settings)
    if not search.available and candidates and not detailed:
        return PriorSearch(
            None,
            not_available(f"none of {len(candidates)} earlier studies is within the look-back"),
            len(candidates),
        )
    return search


def fetch_prior(
    client: QueryRetrieveClient,
    current: CurrentStudy,
    settings: PriorsSettings,
    *,
    destination_ae_title: str,
    before_move: Callable[[PriorCandidate], None] | None = None,
) -> PriorFetch:
    """Search, then C-MOVE the chosen prior study to ``destination_ae_title`` (the node).

    ``before_move`` is told the chosen prior first, so the node can expect it as a prior
    (to be kept, never processed itself) before its instances arrive.
    """
    if not destination_ae_title:
        raise ValueError("destination_ae_title must name the node that receives the prior")
    search = search_priors(client, current, settings)
    if search.prior is None:
        return PriorFetch(search, reason=search.reason)
    if before_move is not None:
        before_move(search.prior)
    try:
        outcome = client.move(
            move_query(search.prior.study_instance_uid),
            destination_ae_title,
            study_instance_uid=current.study_instance_uid,
        )
    except (PeerError, TransientError) as error:
        return PriorFetch(search, reason=not_available(f"PACS did not move the prior ({error})"))
    completed = int(getattr(outcome, "completed", 0) or 0)
    failed = int(getattr(outcome, "failed", 0) or 0)
    if completed == 0:
        return PriorFetch(
            search,
            failed=failed,
            reason=not_available(f"PACS moved no instance of the prior ({failed} failed)"),
        )
    return PriorFetch(search, moved=completed, failed=failed)


def latest_report(datasets: Iterable[Dataset], *, analyzer: str) -> ReportedAnalysis | None:
    """The newest readable pacsflow SR of ``analyzer`` among ``datasets`` (e.g. a moved prior)."""
    reports: list[tuple[tuple[datetime.datetime, int], ReportedAnalysis]] = []
    for dataset in datasets:
        if not is_pacsflow_report(dataset):
            continue
        try:
            report = read_measurement_report(dataset)
        except DatasetError:
            continue
        if report.analyzer != analyzer:
            continue
        when = report.content_datetime or datetime.datetime.min
        reports.append(((when, int(dataset.get("InstanceNumber", 0) or 0)), report))
    if not reports:
        return None
    return max(reports, key=lambda item: item[0])[1]


def parse_date(text: str) -> datetime.date | None:
    text = text.strip()
    if len(text) < 8:
        return None
    try:
        return datetime.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None


def _without_modality_check(candidate: PriorCandidate, current: CurrentStudy) -> PriorCandidate:
    # A PACS may not return Modalities In Study: let the SERIES query decide on modality.
    if candidate.modalities:
        return candidate
    return PriorCandidate(
        study_instance_uid=candidate.study_instance_uid,
        study_date=candidate.study_date,
        study_time=candidate.study_time,
        modalities=(current.modality,) if current.modality else (),
        issuer_of_patient_id=candidate.issuer_of_patient_id,
    )


def _text(dataset: Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    return "" if value is None else str(value).strip()
