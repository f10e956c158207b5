"""The doctor's judgements on plain facts: verdicts, values and fixes (pure)."""

from __future__ import annotations

import pytest

from integrations.doctor.checks import (
    Address,
    AssociationOutcome,
    CheckResult,
    DiskUsage,
    PackageFacts,
    PacsApiView,
    RegisteredModality,
    SchemaState,
    Verdict,
    check_disk,
    check_models,
    check_node_port,
    check_node_registered,
    check_pacs_echo,
    check_schema,
    exit_status,
)

NODE = Address("PACSFLOW", "10.1.2.3", 11112)
PACS = Address("HOSP_PACS", "10.1.2.9", 104)
ACCEPTED = AssociationOutcome(established=True, status=0)


def api(*modalities: RegisteredModality, own: str = "HOSP_PACS") -> PacsApiView:
    return PacsApiView("http://10.1.2.9:8042", own_ae_title=own, modalities=modalities)


def test_a_rejected_calling_ae_title_says_where_to_register_the_node() -> None:
    rejected = AssociationOutcome(established=False, rejection=(1, 1, 3))
    result = check_pacs_echo(rejected, PACS, NODE, None)
    assert result.verdict is Verdict.FAIL
    assert result.value == (
        "the PACS answered A-ASSOCIATE-RJ 'calling AE title not recognised'"
        " (permanent, source 1, reason 3)"
    )
    assert result.fix == "register AE PACSFLOW at 10.1.2.3:11112 in the PACS"


def test_a_rejected_called_ae_title_names_the_pacs_own_title_when_known() -> None:
    rejected = AssociationOutcome(established=False, rejection=(1, 1, 7))
    result = check_pacs_echo(rejected, PACS, NODE, api(own="MAIN_PACS"))
    assert "'called AE title not recognised'" in result.value
    assert result.fix == 'set [pacs] ae_title = "MAIN_PACS" (the PACS\'s own AE title)'


def test_a_transient_rejection_is_busy_not_misconfigured() -> None:
    busy = AssociationOutcome(established=False, rejection=(2, 3, 1))
    result = check_pacs_echo(busy, PACS, NODE, None)
    assert result.verdict is Verdict.FAIL and "busy" in result.fix


def test_echo_success_passes_unless_the_api_names_another_title() -> None:
    assert check_pacs_echo(ACCEPTED, PACS, NODE, api()).verdict is Verdict.PASS
    wrong = check_pacs_echo(ACCEPTED, PACS, NODE, api(own="ORTHANC"))
    assert wrong.verdict is Verdict.FAIL and wrong.fix == 'set [pacs] ae_title = "ORTHANC"'


@pytest.mark.parametrize(
    ("registered", "verdict", "fix"),
    [
        (RegisteredModality("ai", "PACSFLOW", "10.1.2.3", 11112), Verdict.PASS, ""),
        (
            RegisteredModality("ai", "PACSFLOW", "10.1.2.3", 4006),
            Verdict.FAIL,
            "change the PACS's modality 'ai' to 10.1.2.3:11112",
        ),
        (
            RegisteredModality("ai", "PACSFLOW", "10.1.2.4", 11112),
            Verdict.FAIL,
            "change the PACS's modality 'ai' to 10.1.2.3:11112",
        ),
        (
            RegisteredModality("ai", "AI_NODE", "10.1.2.3", 11112),
            Verdict.FAIL,
            "change the AE title of the PACS's modality 'ai' to PACSFLOW, or set [node] ae_title"
            ' = "AI_NODE"',
        ),
        (
            RegisteredModality("ct1", "CT1", "10.1.5.5", 104),
            Verdict.FAIL,
            "register AE PACSFLOW at 10.1.2.3:11112 in the PACS",
        ),
    ],
)
def test_the_pacs_registration_of_the_node(
    registered: RegisteredModality, verdict: Verdict, fix: str
) -> None:
    result = check_node_registered(NODE, api(registered), ACCEPTED)
    assert (result.verdict, result.fix) == (verdict, fix)


def test_without_an_api_the_registration_is_read_from_a_rejection() -> None:
    rejected = AssociationOutcome(established=False, rejection=(1, 1, 3))
    result = check_node_registered(NODE, None, rejected)
    assert result.verdict is Verdict.FAIL
    assert result.fix == "register AE PACSFLOW at 10.1.2.3:11112 in the PACS"
    assert check_node_registered(NODE, None, ACCEPTED).verdict is Verdict.WARN


def test_the_node_port_held_by_another_program_fails() -> None:
    other = AssociationOutcome(established=False, failure="connection refused")
    assert check_node_port(NODE, True, other).verdict is Verdict.PASS
    held = check_node_port(NODE, False, other)
    assert held.verdict is Verdict.FAIL and "port 11112" in held.fix
    refusing_callers = AssociationOutcome(established=False, rejection=(1, 1, 3))
    assert check_node_port(NODE, False, refusing_callers).verdict is Verdict.PASS


def test_disk_against_the_watermark() -> None:
    gib = 2**30
    assert check_disk(DiskUsage("/var/pacsflow", 50 * gib, 100 * gib), 10).verdict is Verdict.PASS
    assert check_disk(DiskUsage("/var/pacsflow", 15 * gib, 100 * gib), 10).verdict is Verdict.WARN
    full = check_disk(DiskUsage("/var/pacsflow", 4 * gib, 100 * gib), 10)
    assert full.verdict is Verdict.FAIL
    assert full.value == "4.0 % free (4.0 GiB), watermark 10 %"
    assert full.fix.startswith("free at least 6.0 GiB in /var/pacsflow")


def test_schema_missing_and_unknown_migrations() -> None:
    current = SchemaState(applied=("001_a", "002_b"), available=("001_a", "002_b"))
    assert check_schema(current).verdict is Verdict.PASS
    behind = check_schema(SchemaState(applied=("001_a",), available=("001_a", "002_b")))
    assert behind.verdict is Verdict.FAIL and "002_b" in behind.value
    ahead = check_schema(SchemaState(applied=("001_a", "003_c"), available=("001_a",)))
    assert ahead.verdict is Verdict.FAIL and "003_c" in ahead.value


def test_models_clinical_or_not() -> None:
    demo = PackageFacts("chest-xray", 1, "0.1-demo", clinical_use=False)
    clinical = PackageFacts("head-ct", 1, "2.0", clinical_use=True)
    missing = PackageFacts("brain-mr", 0)
    broken = PackageFacts("msk", 1, "1.0", problem="checksum mismatch", clinical_use=True)
    refused, passed, absent, tampered = check_models([demo, clinical, missing, broken], False, "/m")
    assert refused.verdict is Verdict.FAIL and "NOT FOR CLINICAL USE" in refused.value
    assert passed.verdict is Verdict.PASS and passed.value == "version 2.0 verified, clinical"
    assert absent.verdict is Verdict.FAIL and absent.value == "not found in /m"
    assert tampered.verdict is Verdict.FAIL
    (allowed,) = check_models([demo], True, "/m")
    assert allowed.verdict is Verdict.WARN


def test_every_failure_and_warning_carries_a_fix_and_fails_the_exit_status() -> None:
    with pytest.raises(ValueError, match="needs the fix"):
        CheckResult("x", "x", Verdict.FAIL, "broken")
    warn = CheckResult("w", "w", Verdict.WARN, "meh", "do this")
    fail = CheckResult("f", "f", Verdict.FAIL, "broken", "do that")
    assert exit_status([warn]) == 0
    assert exit_status([warn, fail]) == 1
    assert fail.line() == "FAIL  f: broken -- fix: do that"


def test_a_registration_on_the_node_tls_port_is_the_node() -> None:
    node = Address("PACSFLOW", "10.1.2.3", 11112, tls_port=2762)
    on_tls = RegisteredModality("ai", "PACSFLOW", "10.1.2.3", 2762)
    assert check_node_registered(node, api(on_tls), ACCEPTED).verdict is Verdict.PASS
    elsewhere = check_node_registered(
        node, api(RegisteredModality("ai", "PACSFLOW", "10.1.2.3", 104)), ACCEPTED
    )
    assert "the node listens on 11112 (TLS: 2762)" in elsewhere.value
