"""[hl7] allowed_senders: which MSH-3 / MSH-4 / source address may send ADT."""

from __future__ import annotations

import pytest

from integrations.hl7.adt import read_header
from integrations.hl7.listener import peer_host, sender_allowed
from integrations.settings import Hl7SenderSettings
from tests.emr_samples import adt

ALLOWED = [
    Hl7SenderSettings(application="adtsys", facility="HOSP", host="10.0.0.4"),
    Hl7SenderSettings(application="BACKUP-ADT"),
]


@pytest.mark.parametrize(
    ("application", "facility", "peer", "allowed"),
    [
        ("ADTSYS", "HOSP", "10.0.0.4:5123", True),  # case does not matter
        ("ADTSYS^1.2.3^ISO", "HOSP", "10.0.0.4:5123", True),  # HD: the namespace ID counts
        ("ADTSYS", "HOSP", "10.0.0.5:5123", False),  # another address
        ("ADTSYS", "CLINIC", "10.0.0.4:5123", False),
        ("BACKUP-ADT", "ANY", "[fe80::1]:2575", True),  # only the application is pinned
        ("ROGUE", "HOSP", "10.0.0.4:5123", False),
    ],
)
def test_a_sender_must_match_every_key_of_one_entry(application, facility, peer, allowed):
    message = adt("A01", "C1").replace("|ADTSYS|HOSP|", f"|{application}|{facility}|", 1)
    header = read_header(message)
    assert sender_allowed(header, peer, ALLOWED) is allowed


def test_no_list_means_any_sender_and_an_empty_entry_is_refused():
    header = read_header(adt("A01", "C1"))
    assert sender_allowed(header, "192.0.2.1:1", [])
    assert peer_host("[fe80::1]:2575") == "fe80::1"
    with pytest.raises(ValueError, match="at least one"):
        Hl7SenderSettings()
