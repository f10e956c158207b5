"""The go-live checks of ``pacsflow doctor``: what the probes measured, judged (pure).

Each check takes the facts a probe gathered (``integrations.doctor.probes``) and returns one
:class:`CheckResult`: a verdict, the measured value, and for every FAIL or WARN the fix in
words an operator can act on ("register AE PACSFLOW at 10.1.2.3:11112 in the PACS"). Nothing
here opens a socket or a file, so every rule is unit-tested on plain values.

Verdicts: ``PASS``; ``WARN`` (works, but needs attention, or cannot be confirmed from here);
``FAIL`` (go-live is blocked); ``SKIP`` (not configured at this site). ``doctor`` exits 1
when any check failed.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from integrations.dicom import status as dimse_status

ANY_ADDRESS = ("0.0.0.0", "::", "")
# A-ASSOCIATE-RJ (result, source, diagnostic) of PS3.8 9.3.4 that name an AE title.
CALLING_AE_NOT_RECOGNISED = (1, 3)
CALLED_AE_NOT_RECOGNISED = (1, 7)
TLS_FIX = (
    "the TLS handshake with the PACS failed (pacsflow never falls back to plaintext): check"
    " [pacs] tls_ca against the PACS's certificate, tls_server_name, and tls_cert/tls_key if"
    " the PACS asks for a client certificate"
)


class Verdict(enum.StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class CheckResult:
    """One line of the doctor's report."""

    check: str  # a stable id for machines: "pacs-echo", "disk", ...
    title: str  # what was checked, in words
    verdict: Verdict
    value: str  # what was measured
    fix: str = ""  # what to do, for FAIL and WARN

    def __post_init__(self) -> None:
        if self.verdict in (Verdict.FAIL, Verdict.WARN) and not self.fix:
            raise ValueError(f"check {self.check}: a {self.verdict} needs the fix in words")

    def line(self) -> str:
        text = f"{self.verdict.value:<4}  {self.title}: {self.value}"
        return f"{text} -- fix: {self.fix}" if self.fix else text

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict.value}


def exit_status(results: Sequence[CheckResult]) -> int:
    """0 when nothing failed, 1 otherwise (warnings do not fail go-live)."""
    return 1 if any(result.verdict is Verdict.FAIL for result in results) else 0


# -- what the probes report ------------------------------------------------------------------


@dataclass(frozen=True)
class AssociationOutcome:
    """One association and one DIMSE operation on it (C-ECHO or C-FIND)."""

    established: bool
    status: int | None = None  # the operation's final DIMSE status; None: no answer
    rejection: tuple[int, int, int] | None = None  # A-ASSOCIATE-RJ (result, source, reason)
    failure: str = ""  # why no association: "connection refused", "aborted" ...
    seconds: float = 0.0
    matches: int = 0  # C-FIND pending responses with an identifier

    @property
    def succeeded(self) -> bool:
        return self.established and self.status == dimse_status.SUCCESS

    def rejection_text(self) -> str:
        if self.rejection is None:
            return ""
        result, source, reason = self.rejection
        kind = "permanent" if result == 1 else "transient"
        return f"A-ASSOCIATE-RJ '{dimse_status.rejection_words(source, reason)}' ({kind}, source {source}, reason {reason})"


@dataclass(frozen=True)
class RegisteredModality:
    """A DICOM peer as the PACS has it registered (Orthanc's ``/modalities``)."""

    modality_id: str
    ae_title: str
    host: str
    port: int


@dataclass(frozen=True)
class PacsApiView:
    """What the PACS's REST API said about itself and its modalities."""

    url: str
    error: str = ""  # empty: the API answered
    own_ae_title: str = ""
    modalities: tuple[RegisteredModality, ...] = ()


@dataclass(frozen=True)
class Address:
    """Where a DICOM AE listens."""

    ae_title: str
    host: str
    port: int
    tls_port: int = 0  # the node's DICOM TLS port beside the plain one (0: none)

    def __str__(self) -> str:
        return f"{self.ae_title} at {self.host}:{self.port}"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.tls_port) if self.tls_port else (self.port,)

    def listening_on(self) -> str:
        tls = f" (TLS: {self.tls_port})" if self.tls_port else ""
        return f"{self.port}{tls}"


@dataclass(frozen=True)
class PackageFacts:
    """One routed analyzer's package, as the models directory has it."""

    name: str
    found: int  # packages in the folder that declare the name
    version: str = ""
    problem: str = ""  # unreadable manifest, missing weights, checksum mismatch ...
    clinical_use: bool | None = None


@dataclass(frozen=True)
class Connect:
    """One attempt to reach a peer: a TCP (or TLS) connection, or the PACS's own C-ECHO of a
    modality asked through its API."""

    ok: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class LdapOutcome:
    error: str = ""  # empty: bound and searched
    unavailable: bool = False  # the directory could not be reached at all
    bound_as: str = ""
    groups_found: tuple[str, ...] = ()
    groups_missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class FhirOutcome:
    metadata_error: str = ""
    fhir_version: str = ""
    token_error: str = ""
    token: str = ""  # how the token was obtained, in words ("SMART backend token, 300 s")
    seconds: float = 0.0


@dataclass(frozen=True)
class DiskUsage:
    path: str
    free_bytes: int
    total_bytes: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free_bytes / self.total_bytes if self.total_bytes else 0.0


@dataclass(frozen=True)
class SchemaState:
    error: str = ""
    not_created: bool = False  # the embedded database does not exist yet
    applied: tuple[str, ...] = ()
    available: tuple[str, ...] = field(default_factory=tuple)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


# -- the checks ------------------------------------------------------------------------------


def check_config(error: str | None, source: str) -> CheckResult:
    title = "configuration valid"
    if error is None:
        return CheckResult("config", title, Verdict.PASS, source)
    first = error.strip().splitlines()
    return CheckResult(
        "config",
        title,
        Verdict.FAIL,
        " ".join(line.strip() for line in first),
        "correct the key named above (the message names the file or PACSFLOW_* variable and"
        " the nearest known key), then run doctor again",
    )


def node_listening(self_echo: AssociationOutcome) -> bool:
    """The node answers on its port: C-ECHO succeeded, or it refused only the calling AE."""
    rejection = self_echo.rejection
    return self_echo.succeeded or (
        rejection is not None and rejection[1:] == CALLING_AE_NOT_RECOGNISED
    )


def check_node_port(node: Address, port_free: bool, self_echo: AssociationOutcome) -> CheckResult:
    """The node's port is free for ``pacsflow serve``, or the node already listens on it.

    ``self_echo`` is a C-ECHO to the node's AE title on its port, calling as the PACS does.
    """
    title = f"node port {node.host}:{node.port}"
    if self_echo.succeeded:
        return CheckResult(
            "node-port",
            title,
            Verdict.PASS,
            f"node {node.ae_title} listening (C-ECHO {_ms(self_echo.seconds)})",
        )
    if node_listening(self_echo):
        return CheckResult(
            "node-port",
            title,
            Verdict.PASS,
            f"node {node.ae_title} listening (it refused the PACS's AE title: see the PACS -> node check)",
        )
    if port_free:
        return CheckResult("node-port", title, Verdict.PASS, "free (the node is not running)")
    if self_echo.rejection is not None:
        what = f"another DICOM AE answered {self_echo.rejection_text()} for AE {node.ae_title}"
    elif self_echo.established:
        what = "an AE accepted the association but did not answer C-ECHO"
    else:
        what = f"in use by another program ({self_echo.failure or 'not a DICOM node'})"
    return CheckResult(
        "node-port",
        title,
        Verdict.FAIL,
        what,
        f"stop the program that holds port {node.port} (`ss -ltnp 'sport = :{node.port}'` names"
        f" it), or set [node] port to a free one and register it in the PACS",
    )


def _api_note(api: PacsApiView | None) -> str:
    return (
        ""
        if api is None or api.error
        else f" (the PACS's API says its AE title is {api.own_ae_title})"
    )


def check_pacs_echo(
    outcome: AssociationOutcome, pacs: Address, node: Address, api: PacsApiView | None
) -> CheckResult:
    """C-ECHO from the node to the PACS; a wrong AE title named from the PACS's answer."""
    check, title = "pacs-echo", f"C-ECHO node -> PACS {pacs}"
    own = api.own_ae_title.strip() if api is not None and not api.error else ""
    if outcome.succeeded:
        if own and own != pacs.ae_title:
            return CheckResult(
                check,
                title,
                Verdict.FAIL,
                f"answered in {_ms(outcome.seconds)}, but the PACS calls itself {own}"
                f" (it does not check the called AE title; a stricter one would refuse us)",
                f'set [pacs] ae_title = "{own}"',
            )
        return CheckResult(check, title, Verdict.PASS, f"success in {_ms(outcome.seconds)}")
    if outcome.rejection is not None:
        reason = outcome.rejection[1:]
        answer = f"the PACS answered {outcome.rejection_text()}"
        if reason == CALLED_AE_NOT_RECOGNISED:
            fix = (
                f'set [pacs] ae_title = "{own}" (the PACS\'s own AE title)'
                if own
                else f"set [pacs] ae_title to the PACS's own AE title (it does not accept {pacs.ae_title})"
            )
        elif reason == CALLING_AE_NOT_RECOGNISED:
            fix = f"register AE {node.ae_title} at {node.host}:{node.port} in the PACS"
        elif outcome.rejection[0] == 2:
            fix = "the PACS is busy or at its association limit: try again, then ask the PACS team"
        else:
            fix = f"ask the PACS team why it refuses AE {node.ae_title}"
        return CheckResult(check, title, Verdict.FAIL, answer, fix)
    if outcome.established:
        status = "no answer" if outcome.status is None else f"status 0x{outcome.status:04X}"
        return CheckResult(
            check,
            title,
            Verdict.FAIL,
            f"association accepted, C-ECHO {status}",
            f"the PACS refuses C-ECHO from AE {node.ae_title}: allow it in the PACS's settings"
            f" for that AE{_api_note(api)}",
        )
    return CheckResult(
        check,
        title,
        Verdict.FAIL,
        f"no association: {outcome.failure or 'no answer'}",
        TLS_FIX
        if outcome.failure.startswith("TLS")
        else f"start the PACS or correct [pacs] host/port: nothing DICOM answers at"
        f" {pacs.host}:{pacs.port}",
    )


def find_registrations(
    api: PacsApiView, node: Address
) -> tuple[RegisteredModality | None, list[RegisteredModality]]:
    """The PACS's entry for the node (same AE title), and entries at the node's address."""
    exact = next((m for m in api.modalities if m.ae_title.strip() == node.ae_title), None)
    same_address = [
        m
        for m in api.modalities
        if m.port in node.ports and (node.host in ANY_ADDRESS or m.host == node.host)
    ]
    return exact, same_address


def node_modality_id(api: PacsApiView, node: Address, configured: str = "") -> str:
    """The PACS's name for the node: ``[pacs] node_modality_id``, else the modality with the
    node's AE title, else one at the node's address; empty when the PACS has none."""
    if configured:
        return configured
    exact, same_address = find_registrations(api, node)
    chosen = exact or (same_address[0] if same_address else None)
    return chosen.modality_id if chosen else ""


def check_node_registered(
    node: Address,
    api: PacsApiView | None,
    find: AssociationOutcome,
    modality_id: str = "",
) -> CheckResult:
    """The PACS knows the node's AE title at the node's host and port."""
    check, title = "node-registered", f"node AE {node.ae_title} registered at the PACS"
    register = f"register AE {node.ae_title} at {node.host}:{node.port} in the PACS"
    if api is None or api.error:
        if find.rejection is not None and find.rejection[1:] == CALLING_AE_NOT_RECOGNISED:
            return CheckResult(
                check, title, Verdict.FAIL, f"the PACS answered {find.rejection_text()}", register
            )
        how = f"the PACS's API failed ({api.error})" if api is not None else "no [pacs] rest_url"
        return CheckResult(
            check,
            title,
            Verdict.WARN,
            f"cannot read the PACS's modality list: {how}; the PACS accepted our AE"
            if find.established
            else f"cannot read the PACS's modality list: {how}",
            f"check in the PACS that AE {node.ae_title} is registered at {node.host}:{node.port}"
            " (or set [pacs] rest_url so doctor can read it)",
        )
    if modality_id:
        entry = next((m for m in api.modalities if m.modality_id == modality_id), None)
        if entry is None:
            return CheckResult(
                check,
                title,
                Verdict.FAIL,
                f"the PACS has no modality {modality_id!r} ([pacs] node_modality_id)",
                f"{register} as {modality_id!r}, or correct [pacs] node_modality_id",
            )
        exact, same_address = (entry if entry.ae_title == node.ae_title else None), [entry]
    else:
        exact, same_address = find_registrations(api, node)
    if exact is not None:
        wrong = []
        if node.host not in ANY_ADDRESS and exact.host != node.host:
            wrong.append(f"host {exact.host} (the node is at {node.host})")
        if exact.port not in node.ports:
            wrong.append(f"port {exact.port} (the node listens on {node.listening_on()})")
        if wrong:
            return CheckResult(
                check,
                title,
                Verdict.FAIL,
                f"the PACS has AE {node.ae_title} as {exact.modality_id!r} with the wrong "
                + " and ".join(wrong),
                f"change the PACS's modality {exact.modality_id!r} to {node.host}:{node.port}",
            )
        where = f"{exact.host}:{exact.port}"
        value = f"as {exact.modality_id!r} at {where}"
        if node.host in ANY_ADDRESS:
            return CheckResult(
                check,
                title,
                Verdict.WARN,
                value
                + f"; the node listens on all addresses ({node.host or 'any'}), host not compared",
                f"confirm {exact.host} is this machine's address the PACS can reach",
            )
        return CheckResult(check, title, Verdict.PASS, value)
    if same_address:
        other = same_address[0]
        return CheckResult(
            check,
            title,
            Verdict.FAIL,
            f"the PACS has {node.host}:{node.port} registered as AE {other.ae_title}"
            f" ({other.modality_id!r}), not {node.ae_title}",
            f"change the AE title of the PACS's modality {other.modality_id!r} to"
            f' {node.ae_title}, or set [node] ae_title = "{other.ae_title}"',
        )
    return CheckResult(
        check, title, Verdict.FAIL, f"not in the PACS's {len(api.modalities)} modalities", register
    )


def check_pacs_to_node_echo(
    node: Address,
    pacs_ae_title: str,
    allowed_callers: Sequence[str],
    api: PacsApiView | None,
    modality_id: str,
    echo: Connect | None,
    node_listening: bool,
) -> CheckResult:
    """C-ECHO from the PACS to the node, asked through the PACS's API where it has one."""
    check, title = "pacs-to-node-echo", f"C-ECHO PACS -> node {node}"
    allowed = not allowed_callers or pacs_ae_title in allowed_callers
    not_allowed = (
        ""
        if allowed
        else f"; and [node] allowed_callers lacks the PACS's AE {pacs_ae_title}: add it"
    )
    if api is None:
        return CheckResult(
            check,
            title,
            Verdict.WARN,
            "the PACS has no API configured ([pacs] rest_url empty)",
            f"from the PACS, run C-ECHO to AE {node.ae_title} at {node.host}:{node.port}"
            f" (e.g. `echoscu -aet {pacs_ae_title} -aec {node.ae_title} {node.host} {node.port}`)"
            + not_allowed,
        )
    if api.error:
        return CheckResult(
            check,
            title,
            Verdict.FAIL,
            f"the PACS's API at {api.url} failed: {api.error}",
            "correct [pacs] rest_url (and rest_username / the password variable), or run the"
            f" C-ECHO to AE {node.ae_title} at {node.host}:{node.port} from the PACS",
        )
    if not modality_id or echo is None:
        return CheckResult(
            check,
            title,
            Verdict.FAIL,
            "the PACS has no modality for the node to echo",
            f"register AE {node.ae_title} at {node.host}:{node.port} in the PACS (see the"
            " registration check)",
        )
    if echo.ok:
        return CheckResult(
            check,
            title,
            Verdict.PASS,
            f"the PACS's C-ECHO of {modality_id!r} succeeded in {_ms(echo.seconds)}",
        )
    if not node_listening:
        fix = "start the node (`pacsflow serve`), then run doctor again"
    elif not allowed:
        fix = f"add {pacs_ae_title} to [node] allowed_callers (the node refuses unknown callers)"
    else:
        fix = (
            f"the PACS cannot reach {node.host}:{node.port}: check the address it has for"
            f" {modality_id!r}, routes and firewalls between them"
        )
    return CheckResult(
        check,
        title,
        Verdict.FAIL,
        f"the PACS's C-ECHO of {modality_id!r} failed: {echo.detail}",
        fix,
    )


def check_archive_find(
    outcome: AssociationOutcome, pacs: Address, node: Address, priors_enabled: bool
) -> CheckResult:
    """A study-level C-FIND, as prior search sends it."""
    check, title = "archive-find", f"C-FIND on the archive {pacs}"
    if not priors_enabled:
        return CheckResult(check, title, Verdict.SKIP, "[priors] enabled = false")
    if outcome.succeeded:
        return CheckResult(
            check,
            title,
            Verdict.PASS,
            f"success in {_ms(outcome.seconds)} ({outcome.matches} matches)",
        )
    if outcome.rejection is not None:
        value = f"the PACS answered {outcome.rejection_text()}"
        if outcome.rejection[1:] == CALLING_AE_NOT_RECOGNISED:
            fix = f"register AE {node.ae_title} at {node.host}:{node.port} in the PACS"
        else:
            fix = "see the C-ECHO check: the same association fails"
        return CheckResult(check, title, Verdict.FAIL, value, fix)
    if not outcome.established:
        return CheckResult(
            check,
            title,
            Verdict.FAIL,
            f"no association: {outcome.failure or 'no answer'}",
            TLS_FIX
            if outcome.failure.startswith("TLS")
            else "start the PACS or correct [pacs] host/port; priors are searched there",
        )
    answer = "no answer" if outcome.status is None else f"status 0x{outcome.status:04X}"
    return CheckResult(
        check,
        title,
        Verdict.FAIL,
        f"association accepted, C-FIND refused ({answer})",
        f"allow C-FIND (query) from AE {node.ae_title} in the PACS: prior comparison needs it"
        " (Orthanc refuses queries from AE titles missing from DicomModalities)",
    )


def check_listener(
    check: str, title: str, enabled: bool, off: str, connect: Connect | None, fix: str
) -> CheckResult:
    """A TCP listener pacsflow runs or talks to (HL7 ADT listener, EMR and RIS MLLP peers)."""
    if not enabled or connect is None:
        return CheckResult(check, title, Verdict.SKIP, off)
    if connect.ok:
        return CheckResult(
            check, title, Verdict.PASS, f"accepts connections ({_ms(connect.seconds)})"
        )
    return CheckResult(check, title, Verdict.FAIL, connect.detail or "no answer", fix)


def check_fhir(enabled: bool, base_url: str, auth: str, outcome: FhirOutcome | None) -> CheckResult:
    check, title = "fhir", f"FHIR server {base_url or '(none)'}"
    if not enabled or outcome is None:
        return CheckResult(check, title, Verdict.SKIP, "[fhir] enabled = false")
    if outcome.metadata_error:
        return CheckResult(
            check,
            title,
            Verdict.FAIL,
            f"GET /metadata failed: {outcome.metadata_error}",
            "correct [fhir] base_url, or ask the EMR team whether the FHIR server is up",
        )
    metadata = f"CapabilityStatement FHIR {outcome.fhir_version or '?'}"
    if outcome.token_error:
        return CheckResult(
            check,
            title,
            Verdict.FAIL,
            f"{metadata}; token: {outcome.token_error}",
            "set the token variable ([fhir] bearer_env)"
            if auth == "bearer"
            else "check [fhir] client_id, key_id and the private key ([fhir] private_key_env)"
            " against the client registered at the authorization server",
        )
    return CheckResult(
        check, title, Verdict.PASS, f"{metadata}; {outcome.token} ({_ms(outcome.seconds)})"
    )


def check_ldap(url: str, outcome: LdapOutcome | None) -> CheckResult:
    check, title = "ldap", f"LDAP bind and group lookup {url or '(none)'}"
    if not url or outcome is None:
        return CheckResult(check, title, Verdict.SKIP, "[ldap] url empty (console logins off)")
    if outcome.error:
        fix = (
            f"start the directory or correct [ldap] url: {url} does not answer"
            if outcome.unavailable
            else "check [ldap] bind_dn and the password in [ldap] bind_credentials_env, and"
            " group_search_base"
        )
        return CheckResult(check, title, Verdict.FAIL, outcome.error, fix)
    value = f"bound as {outcome.bound_as}; {len(outcome.groups_found)} role group(s) found"
    if not outcome.groups_found and not outcome.groups_missing:
        return CheckResult(
            check,
            title,
            Verdict.WARN,
            value,
            "map directory groups to roles in [rbac]: without them nobody gets a role",
        )
    if outcome.groups_missing:
        return CheckResult(
            check,
            title,
            Verdict.WARN,
            value + f", missing: {', '.join(outcome.groups_missing)}",
            "correct the group DNs in [rbac] (nobody in a missing group gets that role)",
        )
    return CheckResult(check, title, Verdict.PASS, value)


def check_syslog(host: str, port: int, transport: str, connect: Connect | None) -> CheckResult:
    check, title = "syslog", f"audit syslog {transport}://{host or '(none)'}:{port}"
    if not host or connect is None:
        return CheckResult(
            check, title, Verdict.SKIP, "[audit] syslog_host empty (audit kept in PostgreSQL only)"
        )
    if transport == "udp":
        return CheckResult(
            check,
            title,
            Verdict.WARN,
            "UDP: a datagram is never acknowledged, reachability cannot be confirmed",
            'prefer syslog_transport = "tls" (or tcp); check the collector received doctor\'s test',
        )
    if connect.ok:
        return CheckResult(
            check, title, Verdict.PASS, f"{connect.detail or 'connected'} ({_ms(connect.seconds)})"
        )
    return CheckResult(
        check,
        title,
        Verdict.FAIL,
        connect.detail,
        "start the audit record repository or correct [audit] syslog_host/syslog_port; records"
        " queue in PostgreSQL meanwhile",
    )


def check_schema(state: SchemaState) -> CheckResult:
    check, title = "database-schema", "database schema current"
    if state.error:
        return CheckResult(
            check,
            title,
            Verdict.FAIL,
            state.error,
            "start `pacsflow serve` once: it creates and migrates the embedded database"
            if state.not_created
            else "start PostgreSQL or correct [database] url (and its credentials)",
        )
    applied, available = set(state.applied), set(state.available)
    missing = sorted(available - applied)
    unknown = sorted(applied - available)
    latest = max(state.applied, default="none")
    if unknown:
        return CheckResult(
            check,
            title,
            Verdict.FAIL,
            f"the database has migrations this pacsflow does not know: {', '.join(unknown)}",
            "install the pacsflow version that migrated this database (never run an older one on it)",
        )
    if missing:
        return CheckResult(
            check,
            title,
            Verdict.FAIL,
            f"{len(missing)} migration(s) not applied: {', '.join(missing)} (at {latest})",
            "start `pacsflow serve` (or `pacsflow node`) once: it applies them",
        )
    return CheckResult(check, title, Verdict.PASS, f"{len(applied)} migrations, at {latest}")


def check_models(
    packages: Sequence[PackageFacts], allow_non_clinical: bool, models_dir: str
) -> list[CheckResult]:
    """One line per routed analyzer: verified, and clinical or not."""
    if not packages:
        return [
            CheckResult(
                "models", "model packages", Verdict.SKIP, "no routing rule names an analyzer"
            )
        ]
    results = []
    for package in packages:
        check, title = f"model:{package.name}", f"model package {package.name}"
        if package.found == 0:
            results.append(
                CheckResult(
                    check,
                    title,
                    Verdict.FAIL,
                    f"not found in {models_dir}",
                    f"install the package {package.name!r} in [models] dir, or remove it from"
                    " the routing rules",
                )
            )
        elif package.found > 1:
            results.append(
                CheckResult(
                    check,
                    title,
                    Verdict.FAIL,
                    f"{package.found} packages declare this name",
                    "keep one of them in the models directory",
                )
            )
        elif package.problem:
            results.append(
                CheckResult(
                    check,
                    title,
                    Verdict.FAIL,
                    package.problem,
                    "reinstall the package from its vendor (its files do not match its manifest)",
                )
            )
        elif not package.clinical_use:
            value = (
                f"version {package.version} verified; NOT FOR CLINICAL USE (clinical_use = false)"
            )
            if allow_non_clinical:
                results.append(
                    CheckResult(
                        check,
                        title,
                        Verdict.WARN,
                        value + "; loaded because [models] allow_non_clinical = true",
                        "install a clinical package before patients are analysed; every output"
                        " says NOT FOR CLINICAL USE meanwhile",
                    )
                )
            else:
                results.append(
                    CheckResult(
                        check,
                        title,
                        Verdict.FAIL,
                        value + "; the worker will refuse it",
                        "install a clinical package (or, on a demo or test site only, set"
                        " [models] allow_non_clinical = true)",
                    )
                )
        else:
            results.append(
                CheckResult(
                    check, title, Verdict.PASS, f"version {package.version} verified, clinical"
                )
            )
    return results


def check_disk(usage: DiskUsage | None, min_free_percent: float, error: str = "") -> CheckResult:
    check = "disk"
    title = f"free disk in {usage.path if usage else 'the storage directory'}"
    if usage is None:
        return CheckResult(
            check,
            title,
            Verdict.FAIL,
            error or "unknown",
            "create [node] storage_dir (or correct it)",
        )
    gib = usage.free_bytes / 2**30
    value = f"{usage.free_percent:.1f} % free ({gib:.1f} GiB), watermark {min_free_percent:g} %"
    needed = max(0.0, (min_free_percent / 100.0) * usage.total_bytes - usage.free_bytes) / 2**30
    if usage.free_percent < min_free_percent:
        return CheckResult(
            check,
            title,
            Verdict.FAIL,
            value,
            f"free at least {needed:.1f} GiB in {usage.path} (or move [node] storage_dir to a"
            " larger disk); [storage] min_free_percent sets the watermark",
        )
    if usage.free_percent < 2 * min_free_percent:
        return CheckResult(
            check,
            title,
            Verdict.WARN,
            value,
            f"less than twice the watermark is free: plan more space for {usage.path}",
        )
    return CheckResult(check, title, Verdict.PASS, value)
