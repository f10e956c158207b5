"""A site with teams, rosters and channels pointed at the recording peers; closed studies in
the real database; analyses built as values (until the analyzers land, issue 3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from integrations.console.sessions import SESSION_COOKIE, SessionSigner
from integrations.db.connection import Database, open_database
from integrations.db.store import StudyStore
from integrations.dicom.header import read_header
from integrations.escalation.engine import EscalationEngine, forget_engines
from integrations.escalation.service import EscalationService
from integrations.ldap.rbac import Role
from integrations.result_files import save_analysis, study_results_dir
from integrations.settings import Settings
from integrations.urgency import apply_urgency
from models.results import AnalysisResult, CodedConcept, Finding, ModelIdentity, UrgencyTier
from tasks.context import AnalysisRef, StudyContext
from tasks.inference import analysis_ref
from tasks.runtime import Runtime, install_runtime, reset_runtime
from tests.dicom_samples import make_instance, write
from tests.fix_notify import RecordingHttpServer, RecordingSmtpServer

WEBHOOK_SECRET = "test-secret-for-the-signed-webhook"
# The console's session secret and the monitoring token, as a site sets them in the environment
# of every process (the escalation service accepts a console login made with that secret).
CONSOLE_SECRET = "escalation-tests-console-secret-0123456789"
API_TOKEN = "escalation-tests-monitoring-token"
MONITORING = {"Authorization": f"Bearer {API_TOKEN}"}


def console_login(
    username: str, display_name: str, role: Role = Role.EMERGENCY_PHYSICIAN
) -> dict[str, str]:
    """The cookie of a console session (as ``POST /login`` on the console would set it)."""
    signer = SessionSigner(CONSOLE_SECRET, idle_seconds=900, max_seconds=3600)
    return {SESSION_COOKIE: signer.dump(signer.new_session(username, display_name, {role}))}


@pytest.fixture(autouse=True)
def console_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACSFLOW_CONSOLE_SECRET", CONSOLE_SECRET)
    monkeypatch.setenv("PACSFLOW_ESCALATION_API_TOKEN", API_TOKEN)


MODEL = ModelIdentity("test-chest", "1.0", "pacsflow-tests", "0" * 64, clinical_use=False)

PEOPLE = {
    "surg1": {
        "name": "Dr Sam Surgeon",
        "email": "surg1@hospital.test",
        "sms_email": "5550001@sms.hospital.test",
        "pager": "PG-101",
        "hl7_id": "D101",
    },
    "surg2": {
        "name": "Dr Bea Backup",
        "email": "surg2@hospital.test",
        "sms_email": "5550002@sms.hospital.test",
        "pager": "PG-102",
        "hl7_id": "D102",
    },
    "neuro1": {"name": "Dr Nora Neuro", "email": "neuro1@hospital.test", "pager": "PG-201"},
    "stroke1": {"name": "Dr Stan Stroke", "email": "stroke1@hospital.test"},
}


def escalation_section(
    http: RecordingHttpServer, smtp: RecordingSmtpServer, **overrides: Any
) -> dict[str, Any]:
    """Three teams, on call all day every day, one backup for surgery."""
    section: dict[str, Any] = {
        "people": PEOPLE,
        "teams": {
            "surgery": {
                "display_name": "On-call surgery",
                "channels": ["webhook", "pager", "email", "sms", "hl7"],
                "delivery": "all",
                "on_call": [{"person": "surg1"}],
                "backups": ["surg2"],
                "webhook_url": http.url("/hooks/surgery"),
            },
            "neurosurgery": {
                "display_name": "Neurosurgery",
                "channels": ["webhook", "email"],
                "delivery": "all",
                "on_call": [{"person": "neuro1"}],
                "webhook_url": http.url("/hooks/neurosurgery"),
            },
            "stroke": {
                "channels": ["email"],
                "on_call": [{"person": "stroke1"}],
            },
        },
        "webhook_secret": WEBHOOK_SECRET,
        "pager_url": http.url("/pager"),
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "smtp_from": "pacsflow@hospital.test",
        "study_link_template": "https://viewer.hospital.test/?study={study_instance_uid}",
        "base_url": "http://127.0.0.1:1",
        "retry_delays_seconds": [0.05, 0.1],
        "send_timeout_seconds": 2.0,
        "poll_seconds": 0.1,
        "undelivered_retry_seconds": 0.5,
    }
    for key, value in overrides.items():
        if key == "teams":
            section["teams"] = {
                name: {**section["teams"].get(name, {}), **team} for name, team in value.items()
            }
        else:
            section[key] = value
    return section


@dataclass
class Site:
    settings: Settings
    runtime: Runtime
    http: RecordingHttpServer
    smtp: RecordingSmtpServer
    tmp_path: Path

    @property
    def database(self) -> Database:
        return self.runtime.database

    def engine(self) -> EscalationEngine:
        return EscalationEngine(self.settings, self.database, name="test-service")

    def service(self) -> EscalationService:
        return EscalationService(self.engine(), port=0)

    def closed_study(
        self,
        name: str,
        *,
        location: str = "ICU bed 3",
        modality: str = "DX",
        closed_seconds_ago: float = 0.0,
    ) -> StudyContext:
        """A study received (one real instance file, recorded like the node does) and closed."""
        dataset = make_instance(name, modality=modality, accession=f"A-{name}"[:16])
        if location:
            dataset.CurrentPatientLocation = location
        path = write(dataset, self.tmp_path / "instances" / name)
        data = path.read_bytes()
        store = StudyStore(self.database)
        store.record_instance(
            read_header(data), path=str(path), size_bytes=len(data), calling_ae_title="TEST"
        )
        with self.database.connection() as conn:
            row = conn.execute(
                "UPDATE studies SET state = 'processing',"
                " closed_at = clock_timestamp() - make_interval(secs => %s)"
                " WHERE study_instance_uid = %s RETURNING closed_at, generation",
                (closed_seconds_ago, dataset.StudyInstanceUID),
            ).fetchone()
        store_record = store.study(dataset.StudyInstanceUID)
        assert store_record is not None
        from integrations.db.worklist import WorklistStore

        WorklistStore(self.database).mark_analysing(dataset.StudyInstanceUID)
        return StudyContext(
            study_instance_uid=dataset.StudyInstanceUID,
            generation=row["generation"],
            study_key=store_record.study_key,
            modalities=store_record.modalities,
            closed_at=row["closed_at"],
            analyzers={"test-chest": (dataset.SeriesInstanceUID,)},
        )

    def analysis(
        self,
        context: StudyContext,
        findings: list[tuple[str, float]],
        *,
        analyzer: str = "test-chest",
        manifest_tiers: dict[str, str] | None = None,
        threshold: float = 0.5,
        model: ModelIdentity = MODEL,
    ) -> AnalysisRef:
        """An analysis result as an analyzer would return it, scored by the site's urgency
        rules and saved, as run_inference does; returns the reference the flow passes on."""
        tiers = manifest_tiers or {}
        result = AnalysisResult(
            analyzer=analyzer,
            model=model,
            status="analysed",
            findings=tuple(
                Finding(
                    label=label,
                    code=CodedConcept(label.upper().replace(" ", "-"), "99TEST", label),
                    probability=probability,
                    threshold=threshold,
                    present=probability >= threshold,
                    tier=UrgencyTier(tiers.get(label, "Routine")),
                )
                for label, probability in findings
            ),
        )
        result = apply_urgency(result, self.settings.urgency.to_rules())
        folder = study_results_dir(
            self.settings.node.results_dir, context.study_instance_uid, context.generation
        )
        return analysis_ref(result, str(save_analysis(folder, result)))


@pytest.fixture
def make_site(
    settings_factory: Callable[..., Settings],
    notify_http: RecordingHttpServer,
    notify_smtp: RecordingSmtpServer,
    tmp_path: Path,
) -> Iterator[Callable[..., Site]]:
    """Build the site (settings + installed task runtime) with escalation overrides."""
    runtimes: list[Runtime] = []

    def make(*, escalation: dict[str, Any] | None = None, **sections: Any) -> Site:
        settings = settings_factory(
            escalation=escalation_section(notify_http, notify_smtp, **(escalation or {})),
            **sections,
        )
        runtime = Runtime(settings=settings, database=open_database(settings))
        install_runtime(runtime)
        runtimes.append(runtime)
        return Site(settings, runtime, notify_http, notify_smtp, tmp_path)

    yield make
    forget_engines()
    reset_runtime()
    for runtime in runtimes[:-1]:
        runtime.close()
