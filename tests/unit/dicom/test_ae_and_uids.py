import pytest

from integrations.dicom.ae import AllowedCaller, check_association, normalize_ae_title
from integrations.dicom.uids import derived_uid, is_valid_uid, validate_uid
from integrations.errors import InvalidUIDError

CALLERS = (
    AllowedCaller("ORTHANC"),
    AllowedCaller("CT1", "10.0.0.5"),
    AllowedCaller("CT1", "10.0.0.6"),
)


@pytest.mark.parametrize("title", ["", "   ", "A" * 17, "BAD\\AE", "TAB\tAE", "ÄE"])
def test_invalid_ae_titles_are_refused(title):
    with pytest.raises(ValueError):
        normalize_ae_title(title)


def test_ae_title_spaces_are_not_significant():
    assert normalize_ae_title("  PACSFLOW ") == "PACSFLOW"


def test_caller_policy():
    def decide(calling, called="NODE", host="127.0.0.1"):
        return check_association(
            calling, called, host, node_ae_title="NODE", allowed_callers=CALLERS
        )

    assert decide("ORTHANC").accepted
    assert decide("ORTHANC", host="192.168.1.1").accepted  # not pinned
    assert decide("CT1", host="10.0.0.6").accepted
    pinned = decide("CT1", host="10.0.0.7")
    assert not pinned.accepted and "pinned to 10.0.0.5, 10.0.0.6" in pinned.reason
    assert "not in allowed_callers" in decide("UNKNOWN").reason
    assert "called AE title" in decide("ORTHANC", called="OTHER").reason
    assert not check_association(
        "A", "NODE", "h", node_ae_title="NODE", allowed_callers=()
    ).accepted


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1.2.",
        ".1.2",
        "1..2",
        "1.02",
        "1.2.a",
        "../../etc/passwd",
        "1/2",
        "1." + "2" * 63,
        None,
        12,
    ],
)
def test_invalid_uids(value):
    assert not is_valid_uid(value)
    with pytest.raises(InvalidUIDError):
        validate_uid(value)


def test_valid_uids_and_trailing_padding():
    assert validate_uid("1.2.840.10008.1.2.1") == "1.2.840.10008.1.2.1"
    assert validate_uid("1.2.3\x00") == "1.2.3"
    assert is_valid_uid("0.1.0")


def test_derived_uid_is_deterministic_valid_and_distinct():
    first = derived_uid("study", "chest-xray", "1.0", "SR", 1)
    assert first == derived_uid("study", "chest-xray", "1.0", "SR", 1)
    assert first != derived_uid("study", "chest-xray", "1.0", "SR", 2)
    assert first.startswith("2.25.") and is_valid_uid(first) and len(first) <= 64


def test_derived_uid_of_text_utf8_cannot_encode():
    # a lone surrogate reaches derived_uid from the HL7 escaping property test's text
    lone = derived_uid("study", "\ud800")
    assert is_valid_uid(lone) and lone != derived_uid("study", "\ud801")
