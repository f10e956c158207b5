"""HTTP client for a FHIR R4 server: post a transaction, with bearer or SMART auth (I/O).

Authentication (``[fhir] auth``): ``none``; ``bearer`` with a token read from the environment
variable named by ``bearer_env``; or ``smart-backend``: a client-credentials token from the
server's token endpoint (``auth_url``, or discovered from
``<base>/.well-known/smart-configuration``), obtained with a signed client assertion and
reused until shortly before it expires. A 401 drops the cached token and tries once more.

Errors, so the outbox can decide (integrations.errors)::

    connection failure, timeout, 429, 5xx,        PeerUnavailableError / PeerBusyError (retry)
    401/403 after a fresh token, token endpoint   PeerBusyError: a credentials problem the
                                                  operator must fix; nothing is dropped meanwhile
    other 4xx (400, 404, 409, 412, 422)           PeerRejectedError: this bundle is refused
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import Counter

from integrations.errors import PeerBusyError, PeerRejectedError, PeerUnavailableError
from integrations.fhir.smart import CLIENT_ASSERTION_TYPE, client_assertion
from integrations.settings import FhirSettings

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
TOKEN_REFRESH_MARGIN_SECONDS = 30.0

TOKENS_REFUSED = Counter(
    "pacsflow_fhir_tokens_refused_total",
    "SMART token requests the authorization server refused (one per attempt), by HTTP status",
    ["status"],
)


@dataclass(frozen=True)
class FhirResponse:
    status_code: int
    body: dict[str, Any]


def _secret_from_environment(name: str, what: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise PeerBusyError(f"{what}: environment variable {name} is not set", peer="fhir")
    if what == "SMART private key" and not value.lstrip().startswith("-----BEGIN"):
        path = Path(value)
        if not path.is_file():
            raise PeerBusyError(
                f"{what}: {name} is neither a PEM key nor a readable file", peer="fhir"
            )
        return path.read_text()
    return value


def _outcome_text(response: httpx.Response) -> str:
    """The diagnostics of an OperationOutcome body, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        issues = body.get("issue") or []
        texts = [
            issue.get("diagnostics")
            or (issue.get("details") or {}).get("text")
            or issue.get("code", "")
            for issue in issues
        ]
        return "; ".join(text for text in texts if text)[:500]
    return str(body)[:300]


class FhirClient:
    """Posts to one FHIR server; thread-safe token cache."""

    def __init__(
        self, settings: FhirSettings, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self._http = httpx.Client(
            timeout=settings.timeout_seconds, verify=settings.verify_tls, transport=transport
        )
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_url = settings.auth_url
        self._lock = threading.Lock()
        # Called once per token request the authorization server refused, with the token URL
        # and the reason (the audit trail), after the metric is counted.
        self.on_token_refused: Callable[[str, str], None] | None = None

    def close(self) -> None:
        self._http.close()

    # -- authentication -----------------------------------------------------------------------

    def _authorization(self, refresh: bool = False) -> dict[str, str]:
        auth = self.settings.auth
        if auth == "none":
            return {}
        if auth == "bearer":
            return {
                "Authorization": "Bearer "
                + _secret_from_environment(self.settings.bearer_env, "FHIR bearer token")
            }
        with self._lock:
            if refresh or self._token is None or time.monotonic() > self._token_expires:
                self._token, lifetime = self._smart_token()
                self._token_expires = time.monotonic() + max(
                    0.0, lifetime - TOKEN_REFRESH_MARGIN_SECONDS
                )
            return {"Authorization": f"Bearer {self._token}"}

    def token_endpoint(self) -> str:
        if not self._token_url:
            url = f"{self.base_url}/.well-known/smart-configuration"
            try:
                response = self._http.get(url, headers={"Accept": "application/json"})
            except httpx.HTTPError as error:
                raise PeerUnavailableError(
                    f"SMART discovery at {url} failed: {error}", peer=self.base_url
                ) from None
            if response.status_code != 200:
                raise PeerBusyError(
                    f"SMART discovery at {url}: HTTP {response.status_code}", peer=self.base_url
                )
            endpoint = response.json().get("token_endpoint", "")
            if not endpoint:
                raise PeerBusyError(f"{url} names no token_endpoint", peer=self.base_url)
            self._token_url = endpoint
        return self._token_url

    def _smart_token(self) -> tuple[str, float]:
        token_url = self.token_endpoint()
        assertion = client_assertion(
            private_key_pem=_secret_from_environment(
                self.settings.private_key_env, "SMART private key"
            ),
            client_id=self.settings.client_id,
            token_url=token_url,
            algorithm=self.settings.signing_algorithm,
            key_id=self.settings.key_id,
            now=datetime.now(UTC),
        )
        try:
            response = self._http.post(
                token_url,
                data={
                    "grant_type": "client_credentials",
                    "scope": self.settings.scope,
                    "client_assertion_type": CLIENT_ASSERTION_TYPE,
                    "client_assertion": assertion,
                },
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as error:
            raise PeerUnavailableError(
                f"token endpoint {token_url}: {error}", peer=token_url
            ) from None
        if response.status_code != 200:
            raise self._token_refused(
                token_url,
                response.status_code,
                f"token endpoint {token_url} refused the client assertion: HTTP"
                f" {response.status_code} {response.text[:200]}",
            )
        body = response.json()
        token = body.get("access_token")
        if not token:
            raise self._token_refused(
                token_url,
                response.status_code,
                f"token endpoint {token_url} returned no access_token",
            )
        return str(token), float(body.get("expires_in", 300))

    def _token_refused(self, token_url: str, status: int, reason: str) -> PeerBusyError:
        """Count and audit one refused token request; the error for the outbox to retry."""
        TOKENS_REFUSED.labels(str(status)).inc()
        if self.on_token_refused is not None:
            try:
                self.on_token_refused(token_url, reason)
            except Exception:  # the refusal stands; say so loudly
                log.exception("FHIR token refused, and its audit record failed too")
        return PeerBusyError(reason, peer=token_url)

    # -- requests -----------------------------------------------------------------------------

    def post_transaction(self, bundle: dict[str, Any]) -> FhirResponse:
        """POST a transaction Bundle to the base URL; returns the transaction-response."""
        response = self._send("POST", self.base_url, bundle)
        try:
            body = response.json()
        except ValueError:
            raise PeerBusyError(
                f"FHIR server answered {response.status_code} without JSON", peer=self.base_url
            ) from None
        return FhirResponse(response.status_code, body)

    def read(self, path: str) -> dict[str, Any]:
        response = self._send("GET", f"{self.base_url}/{path.lstrip('/')}", None)
        return response.json()

    def _send(self, method: str, url: str, body: dict[str, Any] | None) -> httpx.Response:
        for attempt in (1, 2):
            headers = {"Accept": FHIR_JSON, **self._authorization(refresh=attempt == 2)}
            if body is not None:
                headers["Content-Type"] = FHIR_JSON
            try:
                response = self._http.request(method, url, json=body, headers=headers)
            except httpx.TimeoutException:
                raise PeerUnavailableError(
                    f"FHIR server {self.base_url} did not answer within {self.settings.timeout_seconds:g} s",
                    peer=self.base_url,
                ) from None
            except httpx.HTTPError as error:
                raise PeerUnavailableError(
                    f"FHIR server {self.base_url}: {error}", peer=self.base_url
                ) from None
            status = response.status_code
            if status in (401, 403) and attempt == 1 and self.settings.auth == "smart-backend":
                log.info("FHIR server answered %d; fetching a new access token", status)
                continue
            if 200 <= status < 300:
                return response
            detail = f"FHIR server {self.base_url}: HTTP {status} {_outcome_text(response)}".strip()
            if status in (401, 403, 408, 429) or status >= 500:
                raise PeerBusyError(detail, peer=self.base_url)
            raise PeerRejectedError(detail, peer=self.base_url)
        raise AssertionError("unreachable")
