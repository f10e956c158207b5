"""Run every doctor check against the configured site, in the go-live guide's order (I/O).

Probes gather facts, checks judge them (``integrations.doctor.checks``). A configuration
that does not load is the only check that stops the others.
"""

from __future__ import annotations

from collections.abc import Callable

from integrations.doctor import probes
from integrations.doctor.checks import (
    Address,
    AssociationOutcome,
    CheckResult,
    Verdict,
    check_archive_find,
    check_config,
    check_disk,
    check_fhir,
    check_ldap,
    check_listener,
    check_models,
    check_node_port,
    check_node_registered,
    check_pacs_echo,
    check_pacs_to_node_echo,
    check_schema,
    check_syslog,
    node_listening,
    node_modality_id,
)
from integrations.errors import ConfigError
from integrations.settings import Settings, load_settings
from integrations.tls import peer_context

# Connect and association wait per DICOM probe: a PACS that is down costs seconds, not minutes.
DICOM_PROBE_TIMEOUT_SECONDS = 5.0


def run_doctor(
    config: str | None, *, settings_loader: Callable[[str | None], Settings] = load_settings
) -> list[CheckResult]:
    try:
        settings = settings_loader(config)
    except ConfigError as error:
        return [check_config(str(error), config or "the default configuration")]
    source = str(settings.config_path) if settings.config_path else "defaults and environment"
    return [check_config(None, source), *site_checks(settings)]


def site_checks(settings: Settings) -> list[CheckResult]:
    node_settings, pacs_settings = settings.node, settings.pacs
    node = Address(
        node_settings.ae_title, node_settings.host, node_settings.port, node_settings.tls_port
    )
    pacs = Address(pacs_settings.ae_title, pacs_settings.host, pacs_settings.port)
    timeout = min(DICOM_PROBE_TIMEOUT_SECONDS, pacs_settings.timeout_seconds)
    results: list[CheckResult] = []

    node_host = "127.0.0.1" if node.host in ("0.0.0.0", "") else node.host
    free = probes.port_is_free(node.host, node.port)
    self_echo = (
        AssociationOutcome(established=False, failure="port free")
        if free
        # as the PACS calls it: the node accepts only its allowed callers
        else probes.dicom_echo(node_host, node.port, node.ae_title, pacs.ae_title, timeout)
    )
    results.append(check_node_port(node, free, self_echo))

    api = probes.pacs_api(settings)
    pacs_tls = peer_context(pacs_settings)  # TLS to the PACS when [pacs] tls, as the SCU
    echo = probes.dicom_echo(pacs.host, pacs.port, pacs.ae_title, node.ae_title, timeout, pacs_tls)
    results.append(check_pacs_echo(echo, pacs, node, api))

    modality_id = pacs_settings.node_modality_id
    rest_echo = None
    if api is not None and not api.error:
        modality_id = node_modality_id(api, node, modality_id)
        if modality_id:
            rest_echo = probes.pacs_echoes_node(settings, modality_id)
    callers = [caller.ae_title for caller in node_settings.caller_policy()]
    results.append(
        check_pacs_to_node_echo(
            node, pacs.ae_title, callers, api, modality_id, rest_echo, node_listening(self_echo)
        )
    )

    find = probes.dicom_find(pacs.host, pacs.port, pacs.ae_title, node.ae_title, timeout, pacs_tls)
    results.append(check_node_registered(node, api, find, pacs_settings.node_modality_id))
    results.append(check_archive_find(find, pacs, node, settings.priors.enabled))

    hl7, emr, ris = settings.hl7, settings.emr, settings.ris
    results.append(
        check_listener(
            "hl7-listener",
            f"HL7 ADT listener {hl7.host}:{hl7.port}",
            hl7.enabled,
            "[hl7] enabled = false",
            probes.tcp_connect(hl7.host, hl7.port) if hl7.enabled else None,
            "start `pacsflow serve` (or `pacsflow hl7-listener`); ADT feeds queue at the"
            " interface engine meanwhile",
        )
    )
    results.append(
        check_listener(
            "emr-mllp",
            f"EMR MLLP receiver {emr.host}:{emr.port}",
            emr.enabled,
            "[emr] enabled = false",
            probes.tcp_connect(emr.host, emr.port, emr.connect_timeout_seconds, peer_context(emr))
            if emr.enabled
            else None,
            "ask the EMR team to open the ORU receiver, or correct [emr] host/port; results"
            " wait in the outbox meanwhile",
        )
    )
    ris_used = settings.worklist.route != "none"
    results.append(
        check_listener(
            "ris-mllp",
            f"RIS MLLP receiver {ris.host}:{ris.port}",
            ris_used,
            "[worklist] route = none",
            probes.tcp_connect(ris.host, ris.port, ris.connect_timeout_seconds, peer_context(ris))
            if ris_used
            else None,
            "ask the RIS team to open the order-update receiver, or correct [ris] host/port",
        )
    )
    fhir = settings.fhir
    results.append(
        check_fhir(
            fhir.enabled,
            fhir.base_url,
            fhir.auth,
            probes.fhir_probe(settings) if fhir.enabled else None,
        )
    )
    ldap_url = settings.ldap.url
    results.append(check_ldap(ldap_url, probes.ldap_probe(settings) if ldap_url else None))
    audit = settings.audit
    results.append(
        check_syslog(
            audit.syslog_host,
            audit.syslog_port,
            audit.syslog_transport,
            probes.syslog_probe(settings) if audit.syslog_host else None,
        )
    )
    results.append(check_schema(probes.schema_state(settings)))
    results.extend(
        check_models(
            probes.package_facts(settings),
            settings.models.allow_non_clinical,
            str(settings.models.dir),
        )
    )
    try:
        usage = probes.disk_usage(node_settings.storage_dir)
        results.append(check_disk(usage, settings.storage.min_free_percent))
    except OSError as error:
        results.append(check_disk(None, settings.storage.min_free_percent, str(error)))
    return results


def failed(results: list[CheckResult]) -> list[CheckResult]:
    return [result for result in results if result.verdict is Verdict.FAIL]
