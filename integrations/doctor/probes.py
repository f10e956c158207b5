"""What ``pacsflow doctor`` measures at each peer: associations, REST calls, binds, disk (I/O).

Every probe returns a small fact record from ``integrations.doctor.checks`` and never raises
for a peer that is down or refuses: that is a finding, not an error. Probes only read and ask
(C-ECHO, C-FIND for an empty date range, GET /metadata, an LDAP search); none of them sends
patient data or changes anything at a peer.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import ssl
import time
from pathlib import Path

import httpx
from pydicom import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from integrations.dicom import status as dimse_status
from integrations.dicom.pacs_api import orthanc_error, pacs_api_client
from integrations.dicom.scu import connect_failure
from integrations.doctor.checks import (
    AssociationOutcome,
    Connect,
    DiskUsage,
    FhirOutcome,
    LdapOutcome,
    PackageFacts,
    PacsApiView,
    RegisteredModality,
    SchemaState,
)
from integrations.settings import Settings
from integrations.tls import client_handshake_failure

# A C-FIND that exercises the service and matches (almost) nothing: a study date in 1900.
FIND_PROBE_DATE = "19000101"


TlsArgs = tuple[ssl.SSLContext, str] | None  # (client context, server name), as the SCU's


def _why_no_connection(host: str, port: int, timeout: float, tls: TlsArgs) -> str:
    if tls is None:
        return connect_failure(host, port, timeout)
    context, server_name = tls
    return (
        client_handshake_failure(host, port, context, server_name, min(timeout, 5.0))
        or "the connection dropped before the association was requested"
    )


def _association(
    host: str,
    port: int,
    called_ae_title: str,
    calling_ae_title: str,
    timeout: float,
    service: str,
    tls: TlsArgs = None,
) -> AssociationOutcome:
    ae = AE(ae_title=calling_ae_title)
    for name in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
        setattr(ae, name, timeout)
    context = Verification if service == "echo" else StudyRootQueryRetrieveInformationModelFind
    ae.add_requested_context(context)
    started = time.monotonic()
    connected: list[bool] = []
    assoc = ae.associate(
        host,
        port,
        ae_title=called_ae_title,
        evt_handlers=[(evt.EVT_CONN_OPEN, lambda _event: connected.append(True))],
        tls_args=tls,
    )
    if not assoc.is_established:
        if assoc.is_rejected:
            primitive = assoc.acceptor.primitive
            return AssociationOutcome(
                established=False,
                rejection=(
                    int(getattr(primitive, "result", 0) or 0),
                    int(getattr(primitive, "result_source", 0) or 0),
                    int(getattr(primitive, "diagnostic", 0) or 0),
                ),
                seconds=time.monotonic() - started,
            )
        why = (
            "connected, but the association was aborted or not answered"
            if connected
            else _why_no_connection(host, port, timeout, tls)
        )
        return AssociationOutcome(
            established=False, failure=why, seconds=time.monotonic() - started
        )
    code: int | None = None
    matches = 0
    try:
        if service == "echo":
            response = assoc.send_c_echo()
            code = int(response.Status) if "Status" in response else None
        else:
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyDate = FIND_PROBE_DATE
            query.StudyInstanceUID = ""
            for response, identifier in assoc.send_c_find(
                query, StudyRootQueryRetrieveInformationModelFind
            ):
                if "Status" not in response:
                    code = None
                    break
                code = int(response.Status)
                if dimse_status.is_pending(code):
                    matches += identifier is not None
                    continue
    finally:
        if assoc.is_established:
            assoc.release()
    return AssociationOutcome(
        established=True, status=code, matches=matches, seconds=time.monotonic() - started
    )


def dicom_echo(
    host: str, port: int, called: str, calling: str, timeout: float, tls: TlsArgs = None
) -> AssociationOutcome:
    return _association(host, port, called, calling, timeout, "echo", tls)


def dicom_find(
    host: str, port: int, called: str, calling: str, timeout: float, tls: TlsArgs = None
) -> AssociationOutcome:
    return _association(host, port, called, calling, timeout, "find", tls)


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (the node could bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host or "0.0.0.0", port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def tcp_connect(host: str, port: int, timeout: float = 5.0, tls: TlsArgs = None) -> Connect:
    """A connection to a listener, with the TLS handshake when the peer is reached over TLS."""
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if tls is not None:
                context, server_name = tls
                with context.wrap_socket(raw, server_hostname=server_name):
                    return Connect(True, "TLS handshake done", time.monotonic() - started)
            return Connect(True, seconds=time.monotonic() - started)
    except OSError:
        return Connect(False, f"{host}:{port}: {_why_no_connection(host, port, timeout, tls)}")


# -- the PACS's REST API (Orthanc) -----------------------------------------------------------


def pacs_api(settings: Settings) -> PacsApiView | None:
    """The PACS's own AE title and its registered modalities; None without ``rest_url``."""
    url = settings.pacs.rest_url
    if not url:
        return None
    try:
        with pacs_api_client(settings.pacs) as http:
            system = http.get("/system")
            if system.status_code != 200:
                return PacsApiView(url, error=f"GET /system: {orthanc_error(system)}")
            listed = http.get("/modalities", params={"expand": ""})
            if listed.status_code != 200:
                return PacsApiView(url, error=f"GET /modalities: {orthanc_error(listed)}")
    except httpx.HTTPError as error:
        return PacsApiView(url, error=f"{type(error).__name__}: {error}")
    modalities = []
    entries = listed.json()
    for modality_id, entry in entries.items() if isinstance(entries, dict) else ():
        if isinstance(entry, list):  # Orthanc's short form [AET, host, port]
            entry = {"AET": entry[0], "Host": entry[1], "Port": entry[2]}
        modalities.append(
            RegisteredModality(
                modality_id,
                str(entry.get("AET", "")),
                str(entry.get("Host", "")),
                int(entry.get("Port", 0)),
            )
        )
    return PacsApiView(
        url, own_ae_title=str(system.json().get("DicomAet", "")), modalities=tuple(modalities)
    )


def pacs_echoes_node(settings: Settings, modality_id: str) -> Connect:
    """Ask the PACS to C-ECHO one of its modalities (Orthanc ``POST /modalities/{id}/echo``)."""
    started = time.monotonic()
    try:
        with pacs_api_client(settings.pacs) as http:
            response = http.post(f"/modalities/{modality_id}/echo", json={})
    except httpx.HTTPError as error:
        return Connect(False, f"{type(error).__name__}: {error}")
    if response.status_code == 200:
        return Connect(True, seconds=time.monotonic() - started)
    return Connect(False, orthanc_error(response), time.monotonic() - started)


# -- HL7, FHIR, LDAP, syslog -------------------------------------------------------------------


def fhir_probe(settings: Settings) -> FhirOutcome:
    from integrations.errors import PacsflowError
    from integrations.fhir.client import FhirClient

    started = time.monotonic()
    client = FhirClient(settings.fhir)
    try:
        try:
            metadata = client._http.get(  # no token: /metadata is public in FHIR R4 (3.1.0.8)
                f"{client.base_url}/metadata", headers={"Accept": "application/fhir+json"}
            )
        except httpx.HTTPError as error:
            return FhirOutcome(metadata_error=f"{type(error).__name__}: {error}")
        if metadata.status_code != 200:
            return FhirOutcome(metadata_error=f"HTTP {metadata.status_code}")
        try:
            body = metadata.json()
        except ValueError:
            return FhirOutcome(metadata_error="the answer is not JSON")
        if body.get("resourceType") != "CapabilityStatement":
            return FhirOutcome(
                metadata_error=f"not a CapabilityStatement ({body.get('resourceType')!r})"
            )
        version = str(body.get("fhirVersion", ""))
        auth = settings.fhir.auth
        try:
            if auth == "none":
                token = "no authentication ([fhir] auth = none)"
            elif auth == "bearer":
                client._authorization()
                token = f"bearer token from {settings.fhir.bearer_env}"
            else:
                _token, lifetime = client._smart_token()
                token = f"SMART backend token obtained (valid {lifetime:.0f} s)"
        except PacsflowError as error:
            return FhirOutcome(fhir_version=version, token_error=str(error))
        return FhirOutcome(fhir_version=version, token=token, seconds=time.monotonic() - started)
    finally:
        client.close()


def ldap_probe(settings: Settings) -> LdapOutcome:
    """Bind as the service account (or anonymously) and look up every [rbac] group."""
    import ldap

    from integrations.errors import ConfigError
    from integrations.ldap.directory import Directory, _describe

    ldap_settings = settings.ldap
    try:
        directory = Directory(ldap_settings)
    except ConfigError as error:
        return LdapOutcome(error=str(error))
    who = ldap_settings.bind_dn or "anonymous"
    try:
        conn = directory._connect()  # the console's own connection options (TLS, timeouts)
        try:
            conn.simple_bind_s(
                ldap_settings.bind_dn, os.environ.get(ldap_settings.bind_credentials_env, "")
            )
            wanted = sorted({dn for dns in settings.rbac.model_dump().values() for dn in dns})
            found, missing = [], []
            for group_dn in wanted:
                try:
                    conn.search_s(group_dn, ldap.SCOPE_BASE, "(objectClass=*)", ["cn"])
                    found.append(group_dn)
                except ldap.NO_SUCH_OBJECT:
                    missing.append(group_dn)
            if ldap_settings.group_search_base:
                conn.search_s(
                    ldap_settings.group_search_base, ldap.SCOPE_BASE, "(objectClass=*)", ["cn"]
                )
        finally:
            conn.unbind_s()
    except (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR) as error:
        return LdapOutcome(
            error=f"{ldap_settings.url} cannot be reached: {_describe(error)}", unavailable=True
        )
    except ldap.LDAPError as error:
        return LdapOutcome(error=f"bind as {who} or search failed: {_describe(error)}")
    return LdapOutcome(bound_as=who, groups_found=tuple(found), groups_missing=tuple(missing))


def syslog_probe(settings: Settings) -> Connect:
    """Open (and for TLS, handshake) the connection the audit sender uses; send nothing."""
    import ssl

    from integrations.audit.sender import SyslogTransport

    transport = SyslogTransport(settings.audit)
    started = time.monotonic()
    try:
        sock = transport._connect()
    except ssl.SSLError as error:
        return Connect(False, f"TLS handshake failed: {error.reason or error}")
    except OSError as error:
        host, port = settings.audit.syslog_host, settings.audit.syslog_port
        return Connect(False, f"{host}:{port}: {error.strerror or error}")
    try:
        detail = "TLS handshake done" if settings.audit.syslog_transport == "tls" else "connected"
        return Connect(True, detail, time.monotonic() - started)
    finally:
        sock.close()


# -- database, models, disk ----------------------------------------------------------------------


def schema_state(settings: Settings) -> SchemaState:
    import psycopg

    from integrations.db.connection import database_url
    from integrations.db.schema import available_migrations

    available = tuple(version for version, _sql in available_migrations())
    pgdata = settings.node.storage_dir / "pgdata"
    if not settings.database.url and not pgdata.exists():  # doctor creates nothing
        return SchemaState(error=f"no embedded database in {pgdata} yet", not_created=True)
    server = None
    try:
        url, server = database_url(settings)
        with psycopg.connect(url, connect_timeout=5) as conn:
            exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
            applied: tuple[str, ...] = ()
            if exists and exists[0]:
                applied = tuple(
                    row[0] for row in conn.execute("SELECT version FROM schema_migrations")
                )
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return SchemaState(error=f"cannot connect: {message}", available=available)
    finally:
        del server  # the embedded server handle: stopped when the last reference goes
    return SchemaState(applied=applied, available=available)


def package_facts(settings: Settings) -> list[PackageFacts]:
    from models.loading import inspect_package
    from models.package_registry import PackageRegistry

    registry = PackageRegistry(settings.models.dir, settings.models.device)
    paths = registry.package_paths()
    facts = []
    for name in settings.analyzer_names():
        found = paths.get(name, [])
        if len(found) != 1:
            facts.append(PackageFacts(name, len(found)))
            continue
        status = inspect_package(found[0])
        manifest = status.manifest
        facts.append(
            PackageFacts(
                name,
                1,
                version=manifest.version if manifest else "",
                problem=status.problem or "",
                clinical_use=manifest.clinical_use if manifest else None,
            )
        )
    return facts


def disk_usage(directory: Path) -> DiskUsage:
    """Free space of the file system holding ``directory`` (its nearest existing parent)."""
    path = directory
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    return DiskUsage(str(directory), usage.free, usage.total)
