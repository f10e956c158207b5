"""The acceptance record: steps, verdict, and its Ed25519 signature (pure).

A record is plain JSON. Each case has one result per go-live step (:data:`STEPS`), pass or
fail with its time and limit; a failed step of a Critical case, or a failed step that is
critical for every case (escalation: a page that does not reach the on-call, or a page for a
study that is not Critical; roles: a person seeing what their role may not), marks go-live
BLOCKED. The record carries the versions of pacsflow and every model package and a digest
of the site's configuration, never a patient identifier: studies are named by case and
study key.

The signed file (``acceptance.json``) is ``{"record": ..., "signature": ...}``; the
signature covers the canonical JSON of the record (sorted keys, no spaces, UTF-8), and the
record lists the SHA-256 of its HTML and PDF renderings, so all three are covered.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

RECORD_FORMAT = "pacsflow-acceptance/1"
SIGNATURE_ALGORITHM = "Ed25519"

# step -> what the go-live guide checks
STEPS: dict[str, str] = {
    "arrival": "series arrives at the node within the limit of study close at the PACS",
    "analysis": "analysis completes within the configured latency, with the expected findings",
    "sr_in_pacs": "the SR is back in the PACS, found by C-FIND",
    "overlay_on_region": "the overlays are in the PACS and lie on the ground-truth region",
    "worklist_tier": "the urgency tier is in the worklist field (and the RIS message)",
    "escalation": "Critical cases reach the escalation endpoint within the limit; others never",
    "roles": "each role sees what it must and nothing more (console API)",
}
# Steps whose failure blocks go-live whatever the case's tier.
BLOCKING_STEPS = frozenset({"escalation", "roles"})

VERDICT_PASSED = "PASSED"
VERDICT_FAILED = "FAILED"  # some step failed, none critical: fix and rerun before go-live
VERDICT_BLOCKED = "BLOCKED"  # a critical step failed: go-live must not happen


@dataclass
class StepResult:
    step: str
    passed: bool
    seconds: float | None = None  # the measured time, where the step is timed
    limit_seconds: float | None = None
    detail: str = ""
    critical: bool = False  # set by :func:`finish_record`

    @property
    def title(self) -> str:
        return STEPS[self.step]


@dataclass
class CaseResult:
    case: str
    description: str
    modality: str
    expected_tier: str
    expected_findings: list[str]
    study_key: str = ""
    found_tier: str = ""
    found_findings: list[str] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(step.passed for step in self.steps)


def step_is_critical(case: CaseResult, step: StepResult) -> bool:
    return case.expected_tier == "Critical" or step.step in BLOCKING_STEPS


def verdict(cases: list[CaseResult]) -> tuple[str, list[str]]:
    """The go-live verdict and, when not PASSED, the failed steps as ``case/step``."""
    failed = [(case, step) for case in cases for step in case.steps if not step.passed]
    if not failed:
        return VERDICT_PASSED, []
    names = [f"{case.case}/{step.step}" for case, step in failed]
    if any(step_is_critical(case, step) for case, step in failed):
        return VERDICT_BLOCKED, names
    return VERDICT_FAILED, names


def finish_record(
    *,
    run_id: str,
    started_at: str,
    finished_at: str,
    site: dict[str, Any],
    versions: dict[str, Any],
    cases: list[CaseResult],
    source: str,
) -> dict[str, Any]:
    """The record as JSON-ready data, with each step's criticality and the verdict."""
    for case in cases:
        for step in case.steps:
            step.critical = step_is_critical(case, step)
    outcome, failed = verdict(cases)
    return {
        "format": RECORD_FORMAT,
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": finished_at,
        "source": source,  # "generated" or "site studies"
        "site": site,
        "versions": versions,
        "verdict": outcome,
        "go_live": "BLOCKED" if outcome == VERDICT_BLOCKED else outcome,
        "failed_steps": failed,
        "steps": STEPS,
        # what monitoring compares the daily escalation rate with (integrations.monitoring)
        "escalation_baseline": escalation_baseline(cases),
        "cases": [
            {**asdict(case), "passed": case.passed, "steps": [asdict(s) for s in case.steps]}
            for case in cases
        ],
    }


def escalation_baseline(cases: list[CaseResult]) -> dict[str, dict[str, int]]:
    """Per modality: the cases run and those the site found Critical (and so escalated)."""
    table: dict[str, dict[str, int]] = {}
    for case in cases:
        counts = table.setdefault(case.modality, {"studies": 0, "escalated": 0})
        counts["studies"] += 1
        counts["escalated"] += int(case.found_tier == "Critical")
    return table


def settings_digest(settings_json: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of the site's settings (secrets are never in it)."""
    return hashlib.sha256(canonical_bytes(settings_json)).hexdigest()


def canonical_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8); ValueError for anything else."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the signing key is not an Ed25519 key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM, or the public half of a PEM private key."""
    if b"PRIVATE KEY" in pem:
        return load_private_key(pem).public_key()
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the verification key is not an Ed25519 key")
    return key


def sign_record(record: dict[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """The signed document: the record and an Ed25519 signature over its canonical bytes."""
    public_key = private_key.public_key()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "record": record,
        "signature": {
            "algorithm": SIGNATURE_ALGORITHM,
            "key_id": key_id(public_key),
            "public_key": base64.b64encode(raw).decode(),
            "value": base64.b64encode(private_key.sign(canonical_bytes(record))).decode(),
        },
    }


@dataclass(frozen=True)
class Verification:
    intact: bool
    reason: str
    key_id: str = ""


def verify_document(document: Any, public_key: Ed25519PublicKey | None) -> Verification:
    """Check a signed document; with no ``public_key``, the one it carries (integrity only:
    anyone can re-sign with a key of their own, so sites verify against their key)."""
    if not isinstance(document, dict) or set(document) != {"record", "signature"}:
        return Verification(False, "not a signed acceptance record")
    signature = document["signature"]
    record = document["record"]
    if not isinstance(signature, dict) or signature.get("algorithm") != SIGNATURE_ALGORITHM:
        return Verification(False, "no Ed25519 signature")
    try:
        value = base64.b64decode(signature["value"], validate=True)
        if public_key is None:
            public_key = Ed25519PublicKey.from_public_bytes(
                base64.b64decode(signature["public_key"], validate=True)
            )
    except (KeyError, ValueError, TypeError):
        return Verification(False, "the signature is malformed")
    identity = key_id(public_key)
    if signature.get("key_id") != identity:
        return Verification(False, f"signed with key {signature.get('key_id')}, not {identity}")
    try:
        public_key.verify(value, canonical_bytes(record))
    except InvalidSignature:
        return Verification(False, "the signature does not match the record", identity)
    return Verification(True, "signature valid", identity)
