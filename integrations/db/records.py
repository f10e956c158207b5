"""Rows of pacsflow's database as typed values (pure)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from integrations.dicom.routing import Route


def run_name(modalities: tuple[str, ...], study_key: str, generation: int) -> str:
    """``CR S7K2M9QX4PAB gen 1``: no accession, MRN, name or birth date, ever."""
    return " ".join(part for part in ("/".join(modalities), study_key, f"gen {generation}") if part)


@dataclass(frozen=True)
class StudyRecord:
    study_instance_uid: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    accession_number: str
    study_date: str
    study_time: str
    study_description: str
    referring_physician_name: str
    modalities: tuple[str, ...]
    calling_ae_title: str
    state: str
    generation: int
    instance_count: int
    first_received_at: datetime
    last_received_at: datetime
    closed_at: datetime | None
    close_reason: str | None
    route: Route | None
    unrouted_reason: str | None
    study_key: str = ""  # opaque, PHI-free: what Prefect and the IT operator see

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StudyRecord:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        values["modalities"] = tuple(row.get("modalities") or ())
        values["route"] = Route.from_json(row["route"]) if row.get("route") else None
        return cls(**values)

    @property
    def run_name(self) -> str:
        """The Prefect run name, readable and PHI-free: modalities, study key, generation."""
        return run_name(self.modalities, self.study_key, self.generation)


@dataclass(frozen=True)
class InstanceRecord:
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    instance_number: int | None
    path: str
    modality: str = ""


@dataclass(frozen=True)
class DispatchItem:
    id: int
    study_instance_uid: str
    generation: int
    reason: str
    queued_at: datetime
    closed_at: datetime | None
    priority: int = 0
    priority_reason: str = ""
