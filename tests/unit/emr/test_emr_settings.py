"""The [hl7], [mrn], [emr] and [fhir] settings: validated at start, carried to child processes."""

from __future__ import annotations

import re

import pytest

from integrations.errors import ConfigError
from integrations.settings import load_settings, settings_environment


@pytest.mark.parametrize(
    "sections, named",
    [
        ({"hl7": {"accepted_versions": ["2.2"]}}, "hl7.accepted_versions"),
        ({"hl7": {"default_charset": "EBCDIC"}}, "hl7.default_charset"),
        ({"emr": {"retry_delays_seconds": []}}, "emr.retry_delays_seconds"),
        ({"fhir": {"enabled": True}}, "base_url must be an http(s) URL"),
        (
            {"fhir": {"enabled": True, "base_url": "https://f/R4", "auth": "smart-backend"}},
            "client_id",
        ),
        ({"fhir": {"auth": "basic"}}, "fhir.auth"),
    ],
)
def test_bad_values_name_the_key(sections, named) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_settings(None, search=False, **sections)


def test_sections_reach_a_child_process_through_the_environment(monkeypatch) -> None:
    parent = load_settings(
        None,
        search=False,
        hl7={"port": 3000, "accepted_versions": ["2.5.1"], "default_charset": "8859/1"},
        mrn={"authority_map": {"HOSP_PACS": "HOSP"}, "strip_prefixes": ["MRN-"]},
        emr={"host": "emr.local", "retry_delays_seconds": [1, 2], "context_wait_seconds": 30},
        fhir={
            "enabled": True,
            "base_url": "https://fhir.example.org/R4",
            "auth": "smart-backend",
            "client_id": "pacsflow",
            "identifier_systems": {"HOSP": "urn:oid:1.2.3"},
        },
    )
    for name, value in settings_environment(parent).items():
        monkeypatch.setenv(name, value)
    child = load_settings(None, search=False)
    for section in ("hl7", "mrn", "emr", "fhir"):
        assert getattr(child, section) == getattr(parent, section)
