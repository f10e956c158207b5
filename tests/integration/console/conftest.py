"""A console site for tests: the real slapd, the test database with two patients' studies
(a Critical chest X-ray with a Grad-CAM map and an open escalation, a Routine one), and the
console app (I/O)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from integrations.console.app import create_app, session_signer
from integrations.console.queries import ConsoleQueries
from integrations.db.analyses import AnalysisStore
from integrations.db.connection import Database, open_database
from integrations.db.store import StudyStore
from integrations.db.worklist import WorklistStore
from integrations.dicom.header import read_header
from integrations.result_files import save_analysis, study_results_dir
from integrations.settings import Settings
from models.results import (
    AnalysisResult,
    CodedConcept,
    Finding,
    Heatmap,
    ImageReference,
    ModelIdentity,
    UrgencyTier,
)
from tests.dicom_samples import make_instance, write
from tests.fix_slapd import USERS, Slapd

SECRET = "console-test-secret-" + "x" * 24
MODEL = ModelIdentity("test-chest", "1.0", "pacsflow-tests", "0" * 64, clinical_use=False)

# What must never reach a role that may not see it.
PATIENT_IDENTIFIERS = {
    "critical": ("Crowley^Carla", "MRN-C1-4711", "ACC-C1-4711", "19610203"),
    "routine": ("Rutherford^Ron", "MRN-C1-0815", "ACC-C1-0815", "19790911"),
}
PRIMARY_FINDING = "Tension Pneumothorax"
SECOND_FINDING = "Pleural effusion"
PRIMARY_PROBABILITY = 0.9137
SECOND_PROBABILITY = 0.7713
FINDING_TEXTS = (PRIMARY_FINDING, SECOND_FINDING, "0.9137", "0.7713", "91.4", "77.1")


def phantom_pixels(size: int) -> bytes:
    """A chest-like picture (two dark lungs in a bright body) so screenshots read as one."""
    y, x = np.mgrid[0:size, 0:size] / size
    body = np.exp(-(((x - 0.5) / 0.42) ** 8 + ((y - 0.55) / 0.45) ** 8))
    lungs = sum(np.exp(-(((x - cx) / 0.15) ** 2 + ((y - 0.5) / 0.27) ** 2)) for cx in (0.33, 0.67))
    values = 3000 * body - 2200 * lungs + 300
    return np.clip(values, 0, 4095).astype(np.uint16).tobytes()


@dataclass
class ConsoleSite:
    settings: Settings
    database: Database
    slapd: Slapd
    tmp_path: Path
    studies: dict[str, str]  # "critical" / "routine" -> the key in the console's routes
    uids: dict[str, str]  # "critical" / "routine" -> Study Instance UID
    ack_token: str

    def app(self) -> Any:
        return create_app(self.settings, self.database, signer=session_signer(self.settings))

    def client(self) -> TestClient:
        return TestClient(self.app(), base_url="http://testserver", follow_redirects=False)

    def login(self, username: str, client: TestClient | None = None) -> TestClient:
        client = client or self.client()
        answer = client.post("/login", data={"username": username, "password": USERS[username][1]})
        assert answer.status_code == 303, answer.text
        return client


def _add_study(
    site_tmp: Path,
    database: Database,
    settings: Settings,
    name: str,
    identifiers: tuple[str, str, str, str],
    findings: list[tuple[str, float, UrgencyTier, bool]],
) -> str:
    patient_name, mrn, accession, birth_date = identifiers
    dataset = make_instance(
        name, patient_id=mrn, patient_name=patient_name, accession=accession, size=256
    )
    dataset.PatientBirthDate = birth_date
    dataset.PixelData = phantom_pixels(256)
    dataset.CurrentPatientLocation = "ER bay 2"
    path = write(dataset, site_tmp / "instances" / name)
    data = path.read_bytes()
    store = StudyStore(database)
    store.record_instance(
        read_header(data), path=str(path), size_bytes=len(data), calling_ae_title="TEST"
    )
    study = dataset.StudyInstanceUID
    with database.connection() as conn:
        conn.execute(
            "UPDATE studies SET state = 'processing', closed_at = clock_timestamp()"
            " - interval '20 minutes' WHERE study_instance_uid = %s",
            (study,),
        )
    image = ImageReference(dataset.SOPClassUID, dataset.SOPInstanceUID, dataset.SeriesInstanceUID)
    result = AnalysisResult(
        analyzer="chest-xray",
        model=MODEL,
        status="analysed",
        findings=tuple(
            Finding(
                label=label,
                code=CodedConcept("0", "99TEST", label),
                probability=probability,
                threshold=0.5,
                present=present,
                tier=tier,
                images=(image,),
            )
            for label, probability, tier, present in findings
        ),
        heatmaps=tuple(
            Heatmap(label, image, _blob(0.62, 0.4))
            for label, _probability, _tier, present in findings[:1]
            if present
        ),
        analysed_images=(image,),
    )
    folder = study_results_dir(settings.node.results_dir, study, 1)
    json_path = save_analysis(folder, result)
    AnalysisStore(database).record_analysis(
        study_instance_uid=study,
        analyzer="chest-xray",
        generation=1,
        model_name=MODEL.name,
        model_version=MODEL.version,
        status="analysed",
        tier=result.tier.value,
        result_path=str(json_path),
        summary={
            "status": "analysed",
            "tier": result.tier.value,
            "positive": [
                {"label": f.label, "probability": f.probability, "tier": f.tier.value}
                for f in result.positive_findings
            ],
        },
        inference_seconds=0.1,
    )
    worklist = WorklistStore(database)
    worklist.mark_analysing(study)
    primary = result.primary_finding
    worklist.record_outcome(
        study,
        tier=result.tier.value,
        tier_rank=result.tier.rank,
        primary_finding=primary.label if primary else "",
        primary_probability=primary.probability if primary else None,
        results_stored=True,
    )
    return study


def _blob(cx: float, cy: float) -> np.ndarray:
    y, x = np.mgrid[0:16, 0:16] / 16
    return np.exp(-(((x - cx) / 0.15) ** 2 + ((y - cy) / 0.15) ** 2)).astype(np.float32)


@pytest.fixture
def console_site(
    running_slapd: Slapd, settings_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PACSFLOW_CONSOLE_SECRET", SECRET)
    settings = settings_factory(
        console={"cookie_secure": False, "idle_timeout_minutes": 15},
        ldap=running_slapd.ldap_settings(),
        rbac=running_slapd.rbac_settings(),
        escalation={
            "people": {"surg1": {"name": "Dr Sam Surgeon", "email": "surg1@hospital.test"}},
            "teams": {"surgery": {"channels": ["email"], "on_call": [{"person": "surg1"}]}},
        },
    )
    database = open_database(settings)
    critical = _add_study(
        tmp_path,
        database,
        settings,
        "c1-critical",
        PATIENT_IDENTIFIERS["critical"],
        [
            (PRIMARY_FINDING, PRIMARY_PROBABILITY, UrgencyTier.CRITICAL, True),
            (SECOND_FINDING, SECOND_PROBABILITY, UrgencyTier.URGENT, True),
            ("Cardiomegaly", 0.12, UrgencyTier.ROUTINE, False),
        ],
    )
    routine = _add_study(
        tmp_path,
        database,
        settings,
        "c1-routine",
        PATIENT_IDENTIFIERS["routine"],
        [("Cardiomegaly", 0.08, UrgencyTier.ROUTINE, False)],
    )
    token = secrets.token_urlsafe(24)
    with database.connection() as conn:
        conn.execute(
            "INSERT INTO escalations (idempotency_key, study_instance_uid, generation, analyzer,"
            " finding, finding_code, tier, tier_rule, probability, team, team_rule, state,"
            " ack_token, study_closed_at, first_notified_at)"
            " VALUES (%s, %s, 1, 'chest-xray', %s, '0', 'Critical', 'test', %s, 'surgery',"
            " 'test', 'notified', %s, clock_timestamp() - interval '20 minutes',"
            " clock_timestamp() - interval '19 minutes')",
            (f"esc-{critical}", critical, PRIMARY_FINDING, PRIMARY_PROBABILITY, token),
        )
    uids = {"critical": critical, "routine": routine}
    keys = ConsoleQueries(database).study_keys(list(uids.values()))
    yield ConsoleSite(
        settings,
        database,
        running_slapd,
        tmp_path,
        {name: keys[uid] for name, uid in uids.items()},
        uids,
        token,
    )
    database.close()
