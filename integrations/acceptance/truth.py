"""The acceptance suite's cases and their documented ground truth (pure: builds datasets).

A :class:`Case` is one study with what is true about it: the urgency tier the engine must
give it, the findings it must report, and the region each finding lies in (a pixel box per
image). :func:`generated_cases` draws the ten go-live cases with the project's phantom
generators (2 Critical, 4 Urgent, 4 Routine over DX, CT and MR); :func:`read_truth_csv`
reads a site's own de-identified studies' truth.

Every run sends its studies under fresh UIDs (:func:`with_fresh_uids`): the same pixels, new
Study, Series, SOP Instance and Frame of Reference UIDs derived from the run, so a second run
on the same site is a new study everywhere and never a duplicate of the first.

The truth CSV (one row per study)::

    case,study_instance_uid,expected_tier,findings,region,description
    S01,1.2.3,Critical,Tension Pneumothorax;Pneumothorax,1.2.3.4:75,76,435,259,chest PA

``findings`` are the labels the analyzers must report present (``;`` between them);
``region`` is ``SOP_INSTANCE_UID[#FRAME]:ROW_MIN,COL_MIN,ROW_MAX,COL_MAX`` boxes in pixels
(``;`` between them, empty for a normal study).
"""

from __future__ import annotations

import copy
import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from pydicom import Dataset

from models.phantoms.base import PhantomStudy, phantom_uid
from models.results import UrgencyTier

CSV_COLUMNS = ("case", "study_instance_uid", "expected_tier", "findings", "region", "description")


@dataclass(frozen=True)
class RegionBox:
    """Where a ground-truth finding lies on one image (and frame): pixel rows and columns,
    both ends included."""

    sop_instance_uid: str
    frame: int | None
    row_min: int
    column_min: int
    row_max: int
    column_max: int

    def to_text(self) -> str:
        frame = f"#{self.frame}" if self.frame else ""
        return (
            f"{self.sop_instance_uid}{frame}:"
            f"{self.row_min},{self.column_min},{self.row_max},{self.column_max}"
        )

    @classmethod
    def from_text(cls, text: str) -> RegionBox:
        where, _, numbers = text.strip().rpartition(":")
        uid, _, frame = where.partition("#")
        values = [int(value) for value in numbers.split(",")]
        if not uid or len(values) != 4:
            raise ValueError(f"region {text!r}: expected UID[#FRAME]:ROW0,COL0,ROW1,COL1")
        row_min, column_min, row_max, column_max = values
        if row_min > row_max or column_min > column_max:
            raise ValueError(f"region {text!r}: the minimum exceeds the maximum")
        return cls(uid, int(frame) if frame else None, *values)


@dataclass(frozen=True)
class Case:
    """One acceptance study and its ground truth."""

    case: str  # "A01": how the record names the study (never a patient identifier)
    description: str
    expected_tier: UrgencyTier
    findings: tuple[str, ...]
    region: tuple[RegionBox, ...]
    datasets: tuple[Dataset, ...] = field(repr=False, compare=False)

    @property
    def study_instance_uid(self) -> str:
        return str(self.datasets[0].StudyInstanceUID)

    @property
    def modality(self) -> str:
        return "/".join(sorted({str(ds.get("Modality", "")) for ds in self.datasets}))

    def truth_row(self) -> dict[str, str]:
        return {
            "case": self.case,
            "study_instance_uid": self.study_instance_uid,
            "expected_tier": self.expected_tier.value,
            "findings": ";".join(self.findings),
            "region": ";".join(box.to_text() for box in self.region),
            "description": self.description,
        }


def region_of(phantom: PhantomStudy, labels: Iterable[str]) -> tuple[RegionBox, ...]:
    """One box per image over the union of the masks of ``labels``."""
    per_image: dict[tuple[str, int | None], np.ndarray] = {}
    for label in labels:
        for key, mask in phantom.masks.get(label, {}).items():
            per_image[key] = per_image[key] | mask if key in per_image else mask
    boxes = []
    for (uid, frame), mask in sorted(per_image.items(), key=lambda item: str(item[0])):
        rows, columns = np.nonzero(mask)
        if len(rows):
            boxes.append(
                RegionBox(
                    uid,
                    frame,
                    int(rows.min()),
                    int(columns.min()),
                    int(rows.max()),
                    int(columns.max()),
                )
            )
    return tuple(boxes)


@dataclass(frozen=True)
class _Recipe:
    case: str
    description: str
    tier: UrgencyTier
    draw: Callable[[], PhantomStudy]


def _recipes() -> list[_Recipe]:
    from models.phantoms import (
        brain_mri_stroke_study,
        brain_mri_study,
        chest_xray_study,
        cta_aorta_study,
        head_ct_study,
        msk_study,
    )

    critical, urgent, routine = UrgencyTier.CRITICAL, UrgencyTier.URGENT, UrgencyTier.ROUTINE

    def pid(number: int) -> str:
        return f"ACCEPT-{number:02d}"

    def acc(number: int) -> str:
        return f"ACCEPT{number:02d}"

    return [
        _Recipe(
            "A01",
            "chest DX PA, tension pneumothorax",
            critical,
            lambda: chest_xray_study(
                7001, ["Tension Pneumothorax"], patient_id=pid(1), accession_number=acc(1)
            ),
        ),
        _Recipe(
            "A02",
            "brain MR diffusion (b0, b1000, ADC), acute ischaemic stroke",
            critical,
            lambda: brain_mri_stroke_study(7020, True, patient_id=pid(2), accession_number=acc(2)),
        ),
        _Recipe(  # whole head, 200 axial slices 1 mm apart, as an MPRAGE arrives
            "A03",
            "brain MR post-contrast T1, enhancing tumour",
            urgent,
            lambda: brain_mri_study(7008, True, patient_id=pid(3), accession_number=acc(3)),
        ),
        _Recipe(
            "A04",
            "wrist DX AP and lateral, fracture",
            urgent,
            lambda: msk_study(
                7005, True, body_part="WRIST", patient_id=pid(4), accession_number=acc(4)
            ),
        ),
        _Recipe(
            "A05",
            "ankle DX AP and lateral, fracture",
            urgent,
            lambda: msk_study(
                7006, True, body_part="ANKLE", patient_id=pid(5), accession_number=acc(5)
            ),
        ),
        _Recipe(
            "A06",
            "chest DX PA, lung mass",
            urgent,
            lambda: chest_xray_study(7003, ["Mass"], patient_id=pid(6), accession_number=acc(6)),
        ),
        _Recipe(
            "A07",
            "chest DX PA, normal",
            routine,
            lambda: chest_xray_study(7004, [], patient_id=pid(7), accession_number=acc(7)),
        ),
        _Recipe(
            "A08",
            "wrist DX AP and lateral, normal",
            routine,
            lambda: msk_study(
                7007, False, body_part="WRIST", patient_id=pid(8), accession_number=acc(8)
            ),
        ),
        _Recipe(
            "A09",
            "head CT non-contrast, normal",
            routine,
            lambda: head_ct_study(7011, [], patient_id=pid(9), accession_number=acc(9)),
        ),
        _Recipe(
            "A10",
            "CT angiography, normal aorta",
            routine,
            lambda: cta_aorta_study(7009, None, patient_id=pid(10), accession_number=acc(10)),
        ),
    ]


GENERATED_CASES = tuple(recipe.case for recipe in _recipes())


def generated_cases(only: Sequence[str] = ()) -> list[Case]:
    """The ten go-live cases (or those named in ``only``), drawn by the phantom generators.

    2 Critical (chest DX tension pneumothorax, MR diffusion stroke), 4 Urgent (brain MR
    tumour, wrist and ankle fractures, chest DX mass), 4 Routine (normal chest, wrist, head CT
    and CT angiography). The brain tumour case took the place of a chest DX pneumothorax,
    whose label the tension pneumothorax of A01 already reports.

    The seeds are fixed: the same pixels on every run and every site, so a record compares
    with the baseline measured here. Findings are every label the phantom draws (a tension
    pneumothorax is also a pneumothorax), the region their masks.
    """
    cases = []
    for recipe in _recipes():
        if only and recipe.case not in only:
            continue
        phantom = recipe.draw()
        findings = tuple(sorted(phantom.labels))
        cases.append(
            Case(
                recipe.case,
                recipe.description,
                recipe.tier,
                findings,
                region_of(phantom, findings),
                tuple(phantom.datasets),
            )
        )
    unknown = set(only) - {case.case for case in cases}
    if unknown:
        raise ValueError(
            f"no generated case {', '.join(sorted(unknown))}; known: {', '.join(GENERATED_CASES)}"
        )
    return cases


def write_truth_csv(cases: Iterable[Case]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for case in cases:
        writer.writerow(case.truth_row())
    return out.getvalue()


@dataclass(frozen=True)
class TruthRow:
    case: str
    study_instance_uid: str
    expected_tier: UrgencyTier
    findings: tuple[str, ...]
    region: tuple[RegionBox, ...]
    description: str


def read_truth_csv(text: str) -> list[TruthRow]:
    """Parse the truth CSV; ValueError naming the line for anything malformed."""
    reader = csv.DictReader(io.StringIO(text))
    missing = set(CSV_COLUMNS[:4]) - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"truth CSV lacks the column(s) {', '.join(sorted(missing))}")
    rows = []
    for line, row in enumerate(reader, start=2):
        try:
            tier = UrgencyTier(row["expected_tier"].strip())
            region = tuple(
                RegionBox.from_text(part) for part in (row.get("region") or "").split(";") if part
            )
        except ValueError as error:
            raise ValueError(f"truth CSV line {line}: {error}") from None
        case_name = row["case"].strip()
        uid = row["study_instance_uid"].strip()
        if not case_name or not uid:
            raise ValueError(f"truth CSV line {line}: case and study_instance_uid are required")
        rows.append(
            TruthRow(
                case_name,
                uid,
                tier,
                tuple(part.strip() for part in row["findings"].split(";") if part.strip()),
                region,
                (row.get("description") or "").strip(),
            )
        )
    return rows


def cases_from_truth(rows: Sequence[TruthRow], datasets: Iterable[Dataset]) -> list[Case]:
    """Join the truth rows with a site's studies (datasets grouped by Study Instance UID)."""
    by_study: dict[str, list[Dataset]] = {}
    for dataset in datasets:
        by_study.setdefault(str(dataset.StudyInstanceUID), []).append(dataset)
    cases = []
    for row in rows:
        found = by_study.get(row.study_instance_uid)
        if not found:
            raise ValueError(f"case {row.case}: no study {row.study_instance_uid} in the folder")
        known = {str(ds.SOPInstanceUID) for ds in found}
        stray = [box.sop_instance_uid for box in row.region if box.sop_instance_uid not in known]
        if stray:
            raise ValueError(f"case {row.case}: region names images not in the study: {stray}")
        cases.append(
            Case(
                row.case,
                row.description or row.case,
                row.expected_tier,
                row.findings,
                row.region,
                tuple(found),
            )
        )
    return cases


_RENAMED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")


def with_fresh_uids(case: Case, run_id: str) -> Case:
    """The case with every Study, Series, SOP Instance and Frame of Reference UID replaced by
    one derived from ``run_id`` (wherever it occurs, references included); pixels unchanged."""
    mapping: dict[str, str] = {}
    for dataset in case.datasets:
        for keyword in _RENAMED:
            value = dataset.get(keyword)
            if value and str(value) not in mapping:
                mapping[str(value)] = phantom_uid("acceptance", run_id, str(value))
    renamed = []
    for dataset in case.datasets:
        copied = copy.deepcopy(dataset)
        _rename(copied, mapping)
        if getattr(copied, "file_meta", None) is not None:
            _rename(copied.file_meta, mapping)
        renamed.append(copied)
    region = tuple(
        replace(box, sop_instance_uid=mapping.get(box.sop_instance_uid, box.sop_instance_uid))
        for box in case.region
    )
    return replace(case, datasets=tuple(renamed), region=region)


def _rename(dataset: Dataset, mapping: dict[str, str]) -> None:
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                _rename(item, mapping)
        elif element.VR == "UI" and element.value:
            if element.VM > 1:
                element.value = [mapping.get(str(v), str(v)) for v in element.value]
            else:
                element.value = mapping.get(str(element.value), str(element.value))
