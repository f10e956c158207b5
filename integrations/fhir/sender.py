"""The FHIR outbox sender: DiagnosticReport transactions to the FHIR server (I/O).

2xx with every entry 2xx: sent (the transaction-response, with the server's locations, is
kept). Transient failures (no answer, 429, 5xx, credentials the operator must fix) are retried
with backoff; a bundle the server refuses (other 4xx) fails with its OperationOutcome text.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from integrations.db.connection import Database
from integrations.db.outbox import FhirOutboxStore, OutboxItem
from integrations.db.patients import PatientStore, ResolvedContext
from integrations.emr.document import ResultDocument
from integrations.emr.identifiers import MrnRules
from integrations.emr.sender import OutboxSender
from integrations.errors import PeerError, TransientError
from integrations.fhir.client import FhirClient
from integrations.fhir.diagnostic_report import IdentifierSystems, build_report_bundle
from integrations.retry import Outcome, RetryPolicy, failed, retry, sent
from integrations.settings import Settings

log = logging.getLogger(__name__)


class FhirSender(OutboxSender):
    name = "fhir"

    def __init__(
        self, database: Database, settings: Settings, client: FhirClient | None = None
    ) -> None:
        fhir = settings.fhir
        self.rules = MrnRules.from_settings(settings.mrn)
        super().__init__(
            database,
            FhirOutboxStore(database),
            PatientStore(database, self.rules),
            RetryPolicy(fhir.retry_delays_seconds, fhir.retry_jitter),
            lease_seconds=2 * fhir.timeout_seconds + 30.0,
            poll_seconds=fhir.poll_seconds,
            context_wait_seconds=settings.emr.context_wait_seconds,
        )
        self.client = client or FhirClient(fhir)
        self.systems = IdentifierSystems(
            mrn=dict(fhir.identifier_systems),
            placer_order=fhir.placer_order_system,
            accession=fhir.accession_system,
        )

    def render(self, item: OutboxItem, resolved: ResolvedContext | None) -> dict[str, Any]:
        assert item.document is not None
        document = ResultDocument.from_json(item.document)
        if resolved is not None:
            authority = resolved.patient_key.partition("|")[0]
        else:
            study = document.study
            authority = self.rules.dicom_key(study.patient_id, study.issuer_of_patient_id).authority
        return build_report_bundle(
            document,
            resolved.context if resolved else None,
            mrn_authority=authority,
            systems=self.systems,
            now=datetime.now(UTC),
        )

    def deliver(self, item: OutboxItem, payload: dict[str, Any]) -> tuple[Outcome, bool]:
        try:
            response = self.client.post_transaction(payload)
        except TransientError as error:
            # Conditional creates make a resend harmless, so the next attempt is rendered
            # afresh (reported as "not reached"): an ADT arriving meanwhile still gets in.
            return retry(str(error)), False
        except PeerError as error:
            return failed(str(error), http_status=_status_of(error)), True
        statuses = [
            str((entry.get("response") or {}).get("status", ""))
            for entry in response.body.get("entry") or []
        ]
        if response.body.get("type") != "transaction-response" or not all(
            status[:1] == "2" for status in statuses
        ):
            return failed(
                f"unexpected transaction response (entry statuses {statuses})",
                http_status=response.status_code,
                response=Jsonb(response.body),
            ), True
        return sent(http_status=response.status_code, response=Jsonb(response.body)), True

    def close(self) -> None:
        self.client.close()
        super().close()


def _status_of(error: Exception) -> int | None:
    text = str(error)
    marker = "HTTP "
    if marker in text:
        digits = text.split(marker, 1)[1][:3]
        if digits.isdigit():
            return int(digits)
    return None
