"""A labelled validation cohort on disk: DICOM files plus a CSV of study → labels (I/O).

The CSV has a ``StudyInstanceUID`` column and either a ``labels`` column (label names
separated by ``|`` or ``;``, empty for a normal study) or one column per label holding 0/1.
With the ``labels`` form, every model label that appears at least once in the file is
evaluated and a study not listing it counts as negative; with columns, exactly those labels
are evaluated. ``write_phantom_cohort`` writes a generated cohort in this format (tests and
demonstrations).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from integrations.errors import DatasetError
from models.phantoms.base import PhantomStudy

UID_COLUMN = "StudyInstanceUID"


@dataclass
class Cohort:
    studies: dict[str, list[Path]]  # Study Instance UID -> its files
    truth: dict[str, frozenset[str]]  # Study Instance UID -> labels present
    labels: tuple[str, ...]  # the labels this cohort can evaluate
    unreadable: list[str] = field(default_factory=list)

    @property
    def labelled_studies(self) -> list[str]:
        return [uid for uid in self.truth if uid in self.studies]

    @property
    def missing_studies(self) -> list[str]:
        return [uid for uid in self.truth if uid not in self.studies]

    @property
    def unlabelled_studies(self) -> list[str]:
        return [uid for uid in self.studies if uid not in self.truth]


def read_labels(path: Path) -> tuple[dict[str, frozenset[str]], tuple[str, ...]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        if UID_COLUMN not in columns:
            raise DatasetError(f"{path}: no {UID_COLUMN} column (columns: {columns})")
        rows = list(reader)
    truth: dict[str, frozenset[str]] = {}
    if "labels" in columns:
        seen: list[str] = []
        for row in rows:
            names = [
                name.strip()
                for name in (row.get("labels") or "").replace(";", "|").split("|")
                if name.strip()
            ]
            truth[row[UID_COLUMN].strip()] = frozenset(names)
            seen.extend(name for name in names if name not in seen)
        return truth, tuple(seen)
    label_columns = [column for column in columns if column != UID_COLUMN]
    for row in rows:
        present = set()
        for column in label_columns:
            value = (row.get(column) or "").strip().lower()
            if value in ("1", "true", "yes", "y", "present"):
                present.add(column)
            elif value not in ("0", "false", "no", "n", "absent", ""):
                raise DatasetError(f"{path}: {row[UID_COLUMN]} has {column}={value!r} (use 0/1)")
        truth[row[UID_COLUMN].strip()] = frozenset(present)
    return truth, tuple(label_columns)


def index_dicom(folder: Path) -> tuple[dict[str, list[Path]], list[str]]:
    studies: dict[str, list[Path]] = {}
    unreadable = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            header = dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError) as error:
            unreadable.append(f"{path}: {error}")
            continue
        uid = str(header.get("StudyInstanceUID", ""))
        if uid:
            studies.setdefault(uid, []).append(path)
    return studies, unreadable


def load_cohort(folder: Path, labels_csv: Path) -> Cohort:
    truth, labels = read_labels(labels_csv)
    studies, unreadable = index_dicom(folder)
    return Cohort(studies=studies, truth=truth, labels=labels, unreadable=unreadable)


def write_phantom_cohort(
    folder: Path, studies: Sequence[PhantomStudy], labels_csv: Path | None = None
) -> Path:
    """Write generated studies as DICOM files and their truth as a ``labels`` CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    labels_csv = labels_csv or folder / "labels.csv"
    with labels_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([UID_COLUMN, "labels"])
        for study in studies:
            directory = folder / study.study_instance_uid
            directory.mkdir(exist_ok=True)
            for dataset in study.datasets:
                dataset.save_as(
                    directory / f"{dataset.SOPInstanceUID}.dcm", enforce_file_format=True
                )
            writer.writerow([study.study_instance_uid, "|".join(sorted(study.labels))])
    return labels_csv
