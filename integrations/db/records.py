"""Rows of pacsflow's database as typed values (pure)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from integrations.dicom.routing import Route


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

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StudyRecord:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        values["modalities"] = tuple(row.get("modalities") or ())
        values["route"] = Route.from_json(row["route"]) if row.get("route") else None
        return cls(**values)

    @property
    def display_name(self) -> str:
        """A readable, PHI-free run name: accession (or UID) and modalities."""
        label = self.accession_number or self.study_instance_uid
        return f"{label} {'/'.join(self.modalities)}".strip()


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
