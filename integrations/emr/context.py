"""The clinical context of a patient, as HL7 ADT delivers it and results need it (pure).

Values keep HL7 v2 semantics and names (XPN, CX, PL, XCN components) so that they can be
written back into PID, PV1, ORC and OBR without loss; :class:`PatientContext` is one row of
the ``patient_context`` table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class PersonName:
    """XPN: family^given^second and further given names^suffix^prefix."""

    family: str = ""
    given: str = ""
    middle: str = ""
    suffix: str = ""
    prefix: str = ""

    @classmethod
    def from_dicom(cls, value: str) -> PersonName:
        """From a DICOM PN (family^given^middle^prefix^suffix, alphabetic group only)."""
        parts = value.split("=")[0].split("^") + [""] * 5
        return cls(
            family=parts[0], given=parts[1], middle=parts[2], prefix=parts[3], suffix=parts[4]
        )

    @property
    def is_empty(self) -> bool:
        return not any((self.family, self.given, self.middle, self.suffix, self.prefix))

    @property
    def display(self) -> str:
        given = " ".join(part for part in (self.prefix, self.given, self.middle) if part)
        name = ", ".join(part for part in (self.family, given) if part)
        return f"{name} {self.suffix}".strip()


@dataclass(frozen=True)
class PatientIdentifier:
    """CX: an identifier with its assigning authority (HD) and identifier type (table 0203)."""

    id_number: str
    assigning_authority: str = ""  # HD-1 namespace ID
    authority_universal_id: str = ""  # HD-2, e.g. an OID
    authority_universal_id_type: str = ""  # HD-3, e.g. ISO
    identifier_type_code: str = ""  # CX-5, e.g. MR

    @property
    def authority_names(self) -> tuple[str, ...]:
        """The names the authority may be known by, namespace first."""
        return tuple(
            name for name in (self.assigning_authority, self.authority_universal_id) if name
        )


@dataclass(frozen=True)
class Location:
    """PL: point of care (ward)^room^bed^facility, plus a free-text description."""

    point_of_care: str = ""
    room: str = ""
    bed: str = ""
    facility: str = ""
    description: str = ""

    @property
    def is_empty(self) -> bool:
        return not any((self.point_of_care, self.room, self.bed, self.facility))

    @property
    def display(self) -> str:
        """'ICU, room 12, bed 3' for a person reading a page; '' when nothing is known."""
        parts = [self.point_of_care or self.description]
        if self.room:
            parts.append(f"room {self.room}")
        if self.bed:
            parts.append(f"bed {self.bed}")
        return ", ".join(part for part in parts if part)


@dataclass(frozen=True)
class Provider:
    """XCN: a physician, with the ID number the EMR knows them by when there is one."""

    id_number: str = ""
    family: str = ""
    given: str = ""
    middle: str = ""
    suffix: str = ""
    prefix: str = ""
    assigning_authority: str = ""

    @classmethod
    def from_dicom(cls, value: str) -> Provider:
        name = PersonName.from_dicom(value)
        return cls(
            family=name.family,
            given=name.given,
            middle=name.middle,
            suffix=name.suffix,
            prefix=name.prefix,
        )

    @property
    def is_empty(self) -> bool:
        return not (self.id_number or self.family or self.given)

    @property
    def display(self) -> str:
        return PersonName(self.family, self.given, self.middle, self.suffix, self.prefix).display


VISIT_STATUSES = ("registered", "admitted", "discharged", "cancelled", "unknown")


@dataclass(frozen=True)
class PatientContext:
    """Everything ADT told pacsflow about one patient (keyed by the MRN's matching key)."""

    patient_key: str
    identifier: PatientIdentifier
    name: PersonName = field(default_factory=PersonName)
    other_identifiers: tuple[PatientIdentifier, ...] = ()
    birth_date: str = ""  # HL7 DT/DTM as received
    sex: str = ""  # HL7 table 0001
    patient_class: str = ""  # PV1-2, HL7 table 0004
    location: Location = field(default_factory=Location)  # PV1-3, empty after discharge
    prior_location: Location = field(default_factory=Location)  # PV1-6
    attending_doctor: Provider = field(default_factory=Provider)  # PV1-7
    referring_doctor: Provider = field(default_factory=Provider)  # PV1-8
    admitting_doctor: Provider = field(default_factory=Provider)  # PV1-17
    visit_number: PatientIdentifier | None = None  # PV1-19
    visit_status: str = "unknown"
    admitted_at: str = ""  # PV1-44, HL7 DTM
    discharged_at: str = ""  # PV1-45, HL7 DTM
    last_event: str = ""  # e.g. A02
    revision: int = 0  # increases with every ADT message applied

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PatientContext:
        def identifier(item: dict[str, Any] | None) -> PatientIdentifier | None:
            return PatientIdentifier(**item) if item else None

        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["identifier"] = identifier(data["identifier"])
        values["name"] = PersonName(**data.get("name") or {})
        values["other_identifiers"] = tuple(
            PatientIdentifier(**item) for item in data.get("other_identifiers") or ()
        )
        for name in ("location", "prior_location"):
            values[name] = Location(**data.get(name) or {})
        for name in ("attending_doctor", "referring_doctor", "admitting_doctor"):
            values[name] = Provider(**data.get(name) or {})
        values["visit_number"] = identifier(data.get("visit_number"))
        return cls(**values)
