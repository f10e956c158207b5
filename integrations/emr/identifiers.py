"""MRN matching between DICOM (Patient ID, Issuer of Patient ID) and HL7 PID-3 (pure).

Hospitals rarely write the same MRN the same way everywhere: the PACS may store ``0012345``
where ADT sends ``12345``, an issuer ``HOSP_PACS`` where PID-3 says ``HOSP&1.2.840.1&ISO``,
or a prefix ``MRN-``. Both sides are reduced to one matching key ``<authority>|<identifier>``
by configured rules (``[mrn]`` settings); two identifiers match when their keys are equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from integrations.emr.context import PatientIdentifier


@dataclass(frozen=True)
class MatchKey:
    """A patient's matching key, and its two parts."""

    authority: str
    identifier: str

    def __str__(self) -> str:
        return f"{self.authority}|{self.identifier}"


@dataclass(frozen=True)
class MrnRules:
    authority_map: Mapping[str, str] = field(default_factory=dict)
    default_authority: str = ""
    identifier_types: tuple[str, ...] = ("MR",)
    strip_leading_zeros: bool = True
    strip_prefixes: tuple[str, ...] = ()
    case_sensitive: bool = False

    @classmethod
    def from_settings(cls, settings: object) -> MrnRules:
        """From an ``[mrn]`` settings section (``integrations.settings.MrnSettings``)."""
        return cls(
            authority_map=dict(getattr(settings, "authority_map", {})),
            default_authority=getattr(settings, "default_authority", ""),
            identifier_types=tuple(getattr(settings, "identifier_types", ("MR",))),
            strip_leading_zeros=getattr(settings, "strip_leading_zeros", True),
            strip_prefixes=tuple(getattr(settings, "strip_prefixes", ())),
            case_sensitive=getattr(settings, "case_sensitive", False),
        )

    def _fold(self, value: str) -> str:
        return value if self.case_sensitive else value.upper()

    def canonical_authority(self, *names: str) -> str:
        """The configured name of an authority known by any of ``names`` (first wins)."""
        folded_map = {self._fold(key.strip()): value for key, value in self.authority_map.items()}
        present = [name.strip() for name in names if name and name.strip()]
        for name in present:
            mapped = folded_map.get(self._fold(name))
            if mapped is not None:
                return self._fold(mapped)
        if present:
            return self._fold(present[0])
        return self._fold(self.default_authority.strip())

    def normalize_identifier(self, value: str) -> str:
        """The identifier without surrounding blanks, configured prefixes and leading zeros."""
        text = value.strip()
        for prefix in sorted(self.strip_prefixes, key=len, reverse=True):
            if prefix and self._fold(text).startswith(self._fold(prefix)):
                text = text[len(prefix) :].strip()
                break
        if self.strip_leading_zeros and text.isdigit():
            text = text.lstrip("0") or "0"
        return self._fold(text)

    def key(self, identifier: str, *authority_names: str) -> MatchKey:
        return MatchKey(
            self.canonical_authority(*authority_names), self.normalize_identifier(identifier)
        )

    def dicom_key(self, patient_id: str, issuer_of_patient_id: str) -> MatchKey:
        """The key of a study's patient from its DICOM header."""
        return self.key(patient_id, issuer_of_patient_id)

    def hl7_key(self, identifier: PatientIdentifier) -> MatchKey:
        """The key of a PID-3 (or MRG-1) identifier."""
        return self.key(identifier.id_number, *identifier.authority_names)

    def select_mrn(self, identifiers: Sequence[PatientIdentifier]) -> PatientIdentifier | None:
        """The repetition of PID-3 that is the MRN.

        The first one whose CX-5 is one of ``identifier_types``; failing that, the only
        repetition without an identifier type; otherwise None (ambiguous or absent).
        """
        wanted = {self._fold(code) for code in self.identifier_types}
        for identifier in identifiers:
            if identifier.id_number and self._fold(identifier.identifier_type_code) in wanted:
                return identifier
        untyped = [item for item in identifiers if item.id_number and not item.identifier_type_code]
        if len(untyped) == 1:
            return untyped[0]
        return None
