"""A small FHIR R4 server process for the tests: stores what it is sent, after validating it (I/O).

Run as ``python -m tests.peers.fhir_server --port P --dir D [--auth ...]``. No FHIR server
installs on these machines, so this one implements the part of the RESTful API pacsflow uses:

- ``POST <base>`` with a ``transaction`` Bundle: every resource is validated against R4
  (``tests.fhir_r4``; an invalid one makes the whole transaction 400 with an
  OperationOutcome), conditional creates (``ifNoneExist``) are honoured, ``urn:uuid``
  references are rewritten to the created resources, and a ``transaction-response`` returned.
- ``GET <base>/<type>/<id>``, ``GET <base>/<type>?identifier=system|value``, ``GET <base>/metadata``.
- Authentication: ``--auth none``, ``--auth bearer --token T``, or ``--auth smart --public-key
  PEM --client-id C``: SMART backend services, with ``<base>/.well-known/smart-configuration``
  and a token endpoint at ``/auth/token`` that verifies the signed client assertion (RS384 or
  ES384, iss/sub/aud/exp/jti) and issues short-lived bearer tokens. ``--clock-offset S``
  shifts the token server's idea of now by S seconds (a skewed authorization server clock).
- Faults on demand from ``D/faults.json``: ``{"queue": [503, "hang", 400]}`` - one per
  transaction request, used up in order; ``{"token_queue": [503]}`` the same for token
  requests (an HTTP status instead of the token).

Stored resources go to ``D/resources.jsonl`` and are reloaded at start (a restart keeps them);
every request is logged to ``D/requests.jsonl``.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.fhir_r4 import validate_r4
from tests.peers.serving import serve_until_terminated

BASE = "/fhir"
TOKEN_PATH = "/auth/token"
FHIR_JSON = "application/fhir+json"


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Store:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "resources.jsonl"
        self.lock = threading.Lock()
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                resource = json.loads(line)
                self.resources[(resource["resourceType"], resource["id"])] = resource

    def find(self, resource_type: str, system: str, value: str) -> dict[str, Any] | None:
        for (kind, _), resource in self.resources.items():
            if kind == resource_type and any(
                item.get("system") == system and item.get("value") == value
                for item in resource.get("identifier") or []
            ):
                return resource
        return None

    def add(self, resources: list[dict[str, Any]]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            for resource in resources:
                self.resources[(resource["resourceType"], resource["id"])] = resource
                handle.write(json.dumps(resource) + "\n")
            handle.flush()


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing -------------------------------------------------------------------------------

    def _send(self, status: int, body: dict[str, Any], content_type: str = FHIR_JSON) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.server.record(self.command, self.path, status, self.headers.get("Authorization", ""))

    def _outcome(self, status: int, text: str, code: str = "invalid") -> None:
        self._send(
            status,
            {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": code, "diagnostics": text}],
            },
        )

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))

    def _authorized(self) -> bool:
        mode = self.server.auth
        if mode == "none":
            return True
        header = self.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        if mode == "bearer":
            return bool(token) and secrets.compare_digest(token, self.server.token)
        expires = self.server.tokens.get(token)
        return expires is not None and expires > time.time()

    # -- routes ---------------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == f"{BASE}/.well-known/smart-configuration":
            host = self.headers.get("Host")
            self._send(
                200,
                {
                    "token_endpoint": f"http://{host}{TOKEN_PATH}",
                    "grant_types_supported": ["client_credentials"],
                    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                    "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
                    "scopes_supported": ["system/*.write"],
                },
                "application/json",
            )
            return
        if url.path == f"{BASE}/metadata":
            self._send(
                200,
                {
                    "resourceType": "CapabilityStatement",
                    "status": "active",
                    "kind": "instance",
                    "fhirVersion": "4.0.1",
                    "format": ["json"],
                },
            )
            return
        if not self._authorized():
            self._outcome(401, "authentication required", "login")
            return
        parts = url.path[len(BASE) :].strip("/").split("/")
        store = self.server.store
        if len(parts) == 2:
            resource = store.resources.get((parts[0], parts[1]))
            if resource is None:
                self._outcome(404, f"{parts[0]}/{parts[1]} not found", "not-found")
            else:
                self._send(200, resource)
            return
        if len(parts) == 1 and parts[0]:
            query = parse_qs(url.query)
            found = []
            for identifier in query.get("identifier", []):
                system, _, value = identifier.partition("|")
                match = store.find(parts[0], system, value)
                if match:
                    found.append({"fullUrl": f"{parts[0]}/{match['id']}", "resource": match})
            self._send(
                200,
                {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "total": len(found),
                    "entry": found,
                },
            )
            return
        self._outcome(404, "unknown path", "not-found")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path == TOKEN_PATH:
            self._token()
            return
        if url.path.rstrip("/") != BASE:
            self._outcome(404, "only transactions are posted to the base URL", "not-supported")
            return
        fault = self.server.next_fault()
        body = self._body()
        if fault == "hang":
            time.sleep(120)
            return
        if isinstance(fault, int):
            self._outcome(
                fault, f"simulated HTTP {fault}", "transient" if fault >= 500 else "invalid"
            )
            return
        if not self._authorized():
            self._outcome(401, "authentication required", "login")
            return
        try:
            bundle = json.loads(body)
        except ValueError:
            self._outcome(400, "body is not JSON", "structure")
            return
        self._transaction(bundle)

    def _transaction(self, bundle: dict[str, Any]) -> None:
        problems = (
            validate_r4(bundle) if bundle.get("resourceType") == "Bundle" else ["not a Bundle"]
        )
        if bundle.get("type") != "transaction":
            problems.append("Bundle.type must be transaction")
        if problems:
            self._outcome(400, "; ".join(problems)[:2000])
            return
        store = self.server.store
        with store.lock:
            created: list[dict[str, Any]] = []
            replies: list[dict[str, Any]] = []
            locations: dict[str, str] = {}
            for entry in bundle.get("entry") or []:
                resource = dict(entry["resource"])
                request = entry.get("request") or {}
                existing = None
                condition = request.get("ifNoneExist", "")
                if condition.startswith("identifier="):
                    system, _, value = condition[len("identifier=") :].partition("|")
                    existing = store.find(resource["resourceType"], system, value)
                if existing is not None:
                    location = f"{existing['resourceType']}/{existing['id']}"
                    replies.append({"response": {"status": "200 OK", "location": location}})
                else:
                    resource["id"] = uuid.uuid4().hex
                    location = f"{resource['resourceType']}/{resource['id']}"
                    created.append(resource)
                    replies.append({"response": {"status": "201 Created", "location": location}})
                if entry.get("fullUrl"):
                    locations[entry["fullUrl"]] = location
            resolved = [
                json.loads(_rewrite(json.dumps(resource), locations)) for resource in created
            ]
            store.add(resolved)
        self._send(
            200, {"resourceType": "Bundle", "type": "transaction-response", "entry": replies}
        )

    def _token(self) -> None:
        form = {key: values[0] for key, values in parse_qs(self._body().decode()).items()}
        fault = self.server.next_fault("token_queue")
        if isinstance(fault, int):
            self._send(fault, {"error": "temporarily_unavailable"}, "application/json")
            return
        error = self.server.check_assertion(form)
        if error:
            self._send(
                400, {"error": "invalid_client", "error_description": error}, "application/json"
            )
            return
        token = secrets.token_urlsafe(24)
        self.server.tokens[token] = time.time() + self.server.token_lifetime
        self._send(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": self.server.token_lifetime,
                "scope": form.get("scope", ""),
            },
            "application/json",
        )


def _rewrite(text: str, locations: dict[str, str]) -> str:
    for full_url, location in locations.items():
        text = text.replace(f'"{full_url}"', f'"{location}"')
    return text


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, folder: Path, args: argparse.Namespace) -> None:
        self.folder = folder
        self.store = Store(folder)
        self.auth = args.auth
        self.token = args.token or ""
        self.client_id = args.client_id or ""
        self.public_key = (
            serialization.load_pem_public_key(Path(args.public_key).read_bytes())
            if args.public_key
            else None
        )
        self.token_lifetime = args.token_lifetime
        self.clock_offset = args.clock_offset
        self.tokens: dict[str, float] = {}
        self.seen_jti: set[str] = set()
        self.lock = threading.Lock()
        self.log = open(folder / "requests.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        super().__init__(("127.0.0.1", port), Handler)

    def record(self, method: str, path: str, status: int, authorization: str) -> None:
        with self.lock:
            self.log.write(
                json.dumps(
                    {
                        "at": time.time(),
                        "method": method,
                        "path": path,
                        "status": status,
                        "authorization": bool(authorization),
                    }
                )
                + "\n"
            )
            self.log.flush()

    def next_fault(self, name: str = "queue") -> Any:
        path = self.folder / "faults.json"
        with self.lock:
            if not path.exists():
                return None
            data = json.loads(path.read_text())
            queue = data.get(name) or []
            if not queue:
                return None
            fault = queue.pop(0)
            path.write_text(json.dumps(data))
            return fault

    def check_assertion(self, form: dict[str, str]) -> str:
        """Why a SMART client-credentials request is refused ('' when it is accepted)."""
        if self.public_key is None:
            return "this server does not issue tokens"
        if form.get("grant_type") != "client_credentials":
            return "grant_type must be client_credentials"
        if (
            form.get("client_assertion_type")
            != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return "wrong client_assertion_type"
        try:
            header_b64, claims_b64, signature_b64 = form.get("client_assertion", "").split(".")
            header = json.loads(_b64decode(header_b64))
            claims = json.loads(_b64decode(claims_b64))
            signature = _b64decode(signature_b64)
        except ValueError:
            return "client_assertion is not a JWT"
        signed = f"{header_b64}.{claims_b64}".encode()
        try:
            if header.get("alg") == "RS384" and isinstance(self.public_key, rsa.RSAPublicKey):
                self.public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA384())
            elif header.get("alg") == "ES384" and isinstance(
                self.public_key, ec.EllipticCurvePublicKey
            ):
                der = encode_dss_signature(
                    int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big")
                )
                self.public_key.verify(der, signed, ec.ECDSA(hashes.SHA384()))
            else:
                return f"unsupported alg {header.get('alg')!r} for the registered key"
        except InvalidSignature:
            return "client_assertion signature does not verify"
        if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
            return "iss and sub must be the client_id"
        if not str(claims.get("aud", "")).endswith(TOKEN_PATH):
            return "aud must be the token endpoint"
        now = time.time() + self.clock_offset
        if not isinstance(claims.get("exp"), int):
            return "exp missing"
        if claims["exp"] <= now:
            return f"client_assertion expired: exp {claims['exp']} is before now {int(now)}"
        if claims["exp"] > now + 300 + 5:
            return f"exp {claims['exp']} is more than five minutes after now {int(now)}"
        if not claims.get("jti") or claims["jti"] in self.seen_jti:
            return "jti missing or replayed"
        self.seen_jti.add(claims["jti"])
        return ""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--auth", choices=("none", "bearer", "smart"), default="none")
    parser.add_argument("--token")
    parser.add_argument("--client-id")
    parser.add_argument("--public-key")
    parser.add_argument("--token-lifetime", type=int, default=300)
    parser.add_argument("--clock-offset", type=float, default=0.0)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    return serve_until_terminated(Server(args.port, args.dir, args), args.dir)


if __name__ == "__main__":
    sys.exit(main())
