"""The DICOM node: a pynetdicom SCP for Verification and Storage (I/O).

The C-STORE handler does three things and nothing else: land the bytes exactly as received
(no decode), record the instance in PostgreSQL, return a status. Study assembly, routing and
processing happen elsewhere, after the study closes.

The one round trip that records an instance also says whether it is one of pacsflow's own
objects given back by the PACS (kept, never re-opening its study) and, for a SOP Instance UID
seen before, which content was recorded under it. An identical re-send is a silent success; a
changed one is logged, recorded as a node event with both content hashes, and handled by
``[node] on_changed_duplicate``.

pynetdicom's defaults are tightened here: every association is checked against the
allowed-callers policy (AE title, optionally pinned to a host) and the called AE title,
UIDs in DIMSE messages must conform, the maximum PDU is large, and several associations run
concurrently.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import Counter
from pydicom import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from integrations import metrics
from integrations.audit.trail import AuditTrail
from integrations.db.store import KnownInstance, RecordOutcome, StudyStore
from integrations.dicom import status
from integrations.dicom.ae import check_association
from integrations.dicom.disk import DiskWatermark
from integrations.dicom.file_meta import encode_file_meta
from integrations.dicom.guard import ConnectionGuard
from integrations.dicom.header import InstanceHeader, parse_dataset
from integrations.dicom.reactor import request_handler
from integrations.dicom.spool import Spool, SpooledFile, file_content_sha256
from integrations.dicom.uids import validate_uid
from integrations.errors import DatasetError, InvalidUIDError, StoreError
from integrations.settings import NodeSettings
from integrations.tls import listener_context

if TYPE_CHECKING:
    from integrations.escalation.operators import OperatorAlerts

log = logging.getLogger(__name__)

# A-ASSOCIATE-RJ parameters (PS3.8 9.3.4): rejected-permanent, by the DICOM UL service-user.
REJECTED_PERMANENT = 0x01
SOURCE_SERVICE_USER = 0x01
# ... and rejected-transient by the service provider (presentation): temporary congestion.
REJECTED_TRANSIENT = 0x02
SOURCE_SERVICE_PROVIDER_PRESENTATION = 0x03
DIAGNOSTIC_TEMPORARY_CONGESTION = 0x01
DIAGNOSTIC_CALLING_AE_NOT_RECOGNISED = 0x03
DIAGNOSTIC_CALLED_AE_NOT_RECOGNISED = 0x07


# One increment per refused connection, beside its one audit record (rejected associations
# and refused instances are counted by integrations.metrics through NodeCounters).
CONNECTIONS_REFUSED = Counter(
    "pacsflow_dicom_connections_refused_total",
    "Connections the DICOM node refused or ended before an association was negotiated, by kind",
    ["kind"],
)


def configure_pynetdicom() -> None:
    """Process-wide pynetdicom settings the node relies on."""
    _config.ENFORCE_UID_CONFORMANCE = True
    _config.LOG_HANDLER_LEVEL = "none"  # our handlers log what matters, without PHI


@dataclass
class NodeCounters:
    """What the node has done since it started (for logs, bench and the doctor command)."""

    stored: int = 0
    duplicates: int = 0
    changed_duplicates: int = 0
    own_objects: int = 0
    refused: int = 0
    rejected_associations: int = 0
    tls_refused: int = 0  # connections refused on the TLS port (plaintext, old TLS, bad cert)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)
        metrics.node_event(name)


@dataclass
class AssociationActivity:
    """What one accepted association brought, kept in memory for its single audit record
    (written when the connection closes, never on the C-STORE path)."""

    calling_ae_title: str
    called_ae_title: str
    peer_host: str
    studies: dict[str, dict[str, int]] = field(default_factory=dict)  # study -> SOP class -> n
    patients: set[tuple[str, str]] = field(default_factory=set)
    refused: int = 0

    def add(self, header: InstanceHeader) -> None:
        classes = self.studies.setdefault(header.study_instance_uid, {})
        classes[header.sop_class_uid] = classes.get(header.sop_class_uid, 0) + 1
        self.patients.add((header.patient_id, header.issuer_of_patient_id))


class DicomNode:
    """The SCP. ``start()`` returns once it listens; ``stop()`` shuts it down.

    With an ``audit`` trail, every association is audited once: a rejected one when it is
    rejected, an accepted one when its connection closes, with the studies it brought. Each
    rejected association, refused instance and refused connection also gets one audit record
    of its own and one metric increment (audit or not).
    """

    def __init__(
        self,
        settings: NodeSettings,
        store: StudyStore,
        spool: Spool,
        audit: AuditTrail | None = None,
        operators: OperatorAlerts | None = None,
        *,
        min_free_percent: float = 0.0,
    ) -> None:
        self.settings = settings
        self.store = store
        self.spool = spool
        self.audit = audit
        self.operators = operators
        self.min_free_percent = min_free_percent  # [storage] min_free_percent; 0: no check
        self.disk = DiskWatermark(
            settings.spool_dir,
            min_free_percent,
            on_low=self._disk_low,
            on_recovered=self._disk_recovered,
        )
        self.counters = NodeCounters()
        self._associations: dict[int, AssociationActivity] = {}
        self._associations_lock = threading.Lock()
        self._server: ThreadedAssociationServer | None = None
        self._tls_server: ThreadedAssociationServer | None = None
        self.guard = ConnectionGuard(
            per_source=settings.max_connections_per_source,
            max_unproven=max(32, 2 * settings.max_associations),
            negotiation_timeout=settings.negotiation_timeout_seconds,
            max_pdu_length=settings.max_pdu_size,
            record=self._record_connection_event,
        )
        configure_pynetdicom()
        self.ae = self._build_ae()

    def _build_ae(self) -> AE:
        ae = AE(ae_title=self.settings.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(cast(str, context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        ae.maximum_pdu_size = self.settings.max_pdu_size
        ae.maximum_associations = self.settings.max_associations
        ae.acse_timeout = self.settings.acse_timeout_seconds
        ae.dimse_timeout = self.settings.dimse_timeout_seconds
        ae.network_timeout = self.settings.network_timeout_seconds
        # The calling/called checks run in _on_requested (they need the peer's host too).
        ae.require_called_aet = True
        return ae

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None, "node not started"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def tls_address(self) -> tuple[str, int] | None:
        """Where the TLS port listens (None: no ``tls_port``)."""
        if self._tls_server is None:
            return None
        host, port = self._tls_server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_REJECTED, self._on_rejected_by_pynetdicom),
        ]
        if self.audit is not None:
            handlers += [
                (evt.EVT_ACCEPTED, self._on_accepted),
                (evt.EVT_CONN_CLOSE, self._on_connection_closed),
            ]
        # Built first: a bad certificate or key stops the node before it listens at all.
        tls = listener_context(self.settings)
        self._server = self._serve(self.settings.port, handlers, None, "dicom-node")
        if tls is not None:
            # Same guard: per-source limits and the negotiation deadline span both ports.
            self._tls_server = self._serve(self.settings.tls_port, handlers, tls, "dicom-node-tls")
        log.info(
            "DICOM node %s listening on %s:%s%s (%d allowed callers)",
            self.settings.ae_title,
            self.settings.host,
            self.address[1],
            f", TLS on {self.tls_address[1]}" if self.tls_address else "",
            len(self.settings.allowed_callers),
        )

    def _serve(
        self, port: int, handlers: list[Any], tls: ssl.SSLContext | None, name: str
    ) -> ThreadedAssociationServer:
        # No ssl_context for pynetdicom: it would do the handshake in the accept loop.
        server = self.ae.make_server(
            (self.settings.host, port),
            evt_handlers=handlers,
            request_handler=request_handler(self.guard, tls),
        )
        self.ae._servers.append(server)  # as start_server() does; server.shutdown() removes it
        thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
        thread.start()
        return server

    def stop(self) -> None:
        for server in (self._server, self._tls_server):
            if server is not None:
                server.shutdown()
        if self._server is not None or self._tls_server is not None:
            self._server = self._tls_server = None
            self.guard.close_unproven()

    # -- handlers ---------------------------------------------------------------------------

    def _on_requested(self, event: evt.Event) -> None:
        requestor = event.assoc.requestor
        primitive = cast(Any, requestor.primitive)
        calling = str(primitive.calling_ae_title).strip()
        called = str(primitive.called_ae_title).strip()
        host = str(requestor.address)
        decision = check_association(
            calling,
            called,
            host,
            node_ae_title=self.settings.ae_title,
            allowed_callers=self.settings.caller_policy(),
        )
        if decision.accepted:
            room, free = self.disk.room_for_new_studies()
            if not room:
                # Transient: the sender keeps the study and tries again later.
                event.assoc.acse.send_reject(
                    REJECTED_TRANSIENT,
                    SOURCE_SERVICE_PROVIDER_PRESENTATION,
                    DIAGNOSTIC_TEMPORARY_CONGESTION,
                )
                event.assoc.kill()
                reason = (
                    f"storage low: {free:.1f}% free, under the {self.min_free_percent:g}%"
                    " watermark (rejected-transient, temporary congestion)"
                )
                self._association_rejected(calling, called, host, reason)
            return
        diagnostic = (
            DIAGNOSTIC_CALLED_AE_NOT_RECOGNISED
            if called != self.settings.ae_title
            else DIAGNOSTIC_CALLING_AE_NOT_RECOGNISED
        )
        event.assoc.acse.send_reject(REJECTED_PERMANENT, SOURCE_SERVICE_USER, diagnostic)
        # As pynetdicom's own rejection path does: wait until the A-ASSOCIATE-RJ has gone out
        # and the peer closed the connection, so the reject is never cut short by a reset.
        event.assoc.kill()
        self._association_rejected(calling, called, host, decision.reason)

    def _association_rejected(self, calling: str, called: str, host: str, reason: str) -> None:
        """Every A-ASSOCIATE-RJ, ours or pynetdicom's: logged, one node event, one audit
        record, one metric increment."""
        self.counters.add("rejected_associations")
        log.warning("association from %s (%s) rejected: %s", host, calling, reason)
        try:
            self.store.record_event(
                "association_rejected", reason, calling_ae_title=calling, peer_host=host
            )
        except StoreError:
            log.exception("could not record the rejected association")
        if self.audit is not None:
            try:
                self.audit.association_rejected(
                    calling_ae_title=calling, called_ae_title=called, peer_host=host, reason=reason
                )
            except Exception:
                log.exception("could not audit the rejected association")

    def _on_accepted(self, event: evt.Event) -> None:
        requestor = event.assoc.requestor
        activity = AssociationActivity(
            calling_ae_title=str(requestor.ae_title).strip(),
            called_ae_title=self.settings.ae_title,
            peer_host=str(requestor.address),
        )
        with self._associations_lock:
            self._associations[id(event.assoc)] = activity

    def _activity(self, event: evt.Event) -> AssociationActivity | None:
        if self.audit is None:
            return None
        return self._associations.get(id(event.assoc))  # one writer per association thread

    def _on_connection_closed(self, event: evt.Event) -> None:
        with self._associations_lock:
            activity = self._associations.pop(id(event.assoc), None)
        if activity is None or self.audit is None:
            return  # rejected (audited then), or never accepted
        try:
            self.audit.association_completed(
                calling_ae_title=activity.calling_ae_title,
                called_ae_title=activity.called_ae_title,
                peer_host=activity.peer_host,
                node_host=self.settings.host,
                studies=activity.studies,
                patients=sorted(activity.patients),
                refused=activity.refused,
            )
        except Exception:
            log.exception("could not audit the association from %s", activity.peer_host)

    def _on_rejected_by_pynetdicom(self, event: evt.Event) -> None:
        """pynetdicom's own A-ASSOCIATE-RJ (local limit exceeded, ...): ours in _on_requested
        do not raise EVT_REJECTED, so each rejection is recorded once."""
        assoc = event.assoc
        primitive = cast(Any, assoc.acceptor.primitive)
        reason = PYNETDICOM_REJECTIONS.get(
            (primitive.result_source, primitive.diagnostic),
            f"rejected (source {primitive.result_source}, diagnostic {primitive.diagnostic})",
        )
        calling = str(getattr(assoc.requestor, "ae_title", "") or "").strip()
        requested = getattr(assoc.requestor, "primitive", None)
        called = str(getattr(requested, "called_ae_title", "") or self.settings.ae_title).strip()
        self._association_rejected(calling, called, str(assoc.requestor.address), reason)

    def _disk_low(self, free: float) -> None:
        """Once per episode: the CRITICAL line, one node event, one alert to the operators
        (sent in the background: an association thread never waits on a webhook)."""
        where = str(self.settings.storage_dir)
        title = (
            f"DICOM node {self.settings.ae_title}: storage {where} has {free:.1f}% free, under"
            f" {self.min_free_percent:g}%; new associations are refused until it is freed"
        )
        lines = (
            "Open associations go on storing; senders retry the refused studies later.",
            "Free space in the storage folder (old spool and results) or raise its capacity.",
        )
        log.critical("ALERT %s (%s)", title, " ".join(lines))
        try:
            self.store.record_event("disk_low", title)
        except Exception:
            log.exception("could not record the low disk")
        if self.operators is not None:
            operators = self.operators
            facts = {
                "alert": "node_storage_low",
                "free_percent": round(free, 2),
                "min_free_percent": self.min_free_percent,
                "storage_dir": where,
            }
            key = f"node-disk-low-{self.settings.ae_title}-{time.time():.0f}"
            threading.Thread(
                target=operators.send,
                kwargs={"idempotency_key": key, "title": title, "lines": lines, "facts": facts},
                name="node-disk-alert",
                daemon=True,
            ).start()

    def _disk_recovered(self, free: float) -> None:
        log.warning(
            "DICOM node storage back to %.1f%% free (watermark %g%%): accepting associations",
            free,
            self.min_free_percent,
        )
        try:
            self.store.record_event("disk_recovered", f"{free:.1f}% free")
        except Exception:
            log.exception("could not record the recovered disk")

    @property
    def listener_uri(self) -> str:
        host, port = self.address if self._server is not None else (self.settings.host, 0)
        return f"dicom://{self.settings.ae_title}@{host}:{port}"

    def _record_connection_event(self, kind: str, detail: str, host: str, **fields: str) -> None:
        """What the connection guard refused (logged there): one node event, one audit
        record, one metric increment."""
        if kind == "store_refused":  # a C-STORE command pynetdicom cannot read
            code = int(detail.split(" ", 1)[0], 16)
            self._instance_refused(
                code,
                detail.split(" ", 1)[-1],
                calling=fields.get("calling_ae_title", ""),
                host=host,
                sop_instance_uid=fields.get("sop_instance_uid", ""),
            )
            return
        if kind == "tls_refused":
            self.counters.add("tls_refused")
        CONNECTIONS_REFUSED.labels(kind).inc()
        try:
            self.store.record_event(kind, detail, peer_host=host, **fields)
        except Exception:
            log.exception("could not record the refused connection")
        if self.audit is not None:
            try:
                service = (
                    f"dicom+tls://{self.settings.ae_title}@{self.settings.host}:"
                    f"{self.settings.tls_port}"
                    if kind == "tls_refused"
                    else self.listener_uri
                )
                self.audit.connection_refused(peer_host=host, service=service, reason=detail)
            except Exception:
                log.exception("could not audit the refused connection")

    def _instance_refused(
        self,
        code: int,
        reason: str,
        *,
        calling: str,
        host: str,
        sop_instance_uid: str,
        study_instance_uid: str = "",
        sop_class_uid: str = "",
        node_event: bool = True,
        recorded: bool = True,
    ) -> None:
        """Every C-STORE failure status the node gives (logged by the caller): one node
        event (unless the caller wrote its own), one audit record, one metric increment.
        ``recorded=False`` (the database is down): the metric and the log line only."""
        self.counters.add("refused")
        if not recorded:
            return
        if node_event:
            try:
                self.store.record_event(
                    "store_refused",
                    f"0x{code:04X} {reason}",
                    calling_ae_title=calling,
                    peer_host=host,
                    sop_instance_uid=sop_instance_uid[:64],
                    study_instance_uid=study_instance_uid[:64],
                )
            except Exception:
                log.exception("could not record the refused instance")
        if self.audit is not None:
            try:
                self.audit.instance_refused(
                    calling_ae_title=calling,
                    called_ae_title=self.settings.ae_title,
                    peer_host=host,
                    reason=f"0x{code:04X} {reason}",
                    study_instance_uid=study_instance_uid,
                    sop_class_uid=sop_class_uid,
                )
            except Exception:
                log.exception("could not audit the refused instance")

    def _on_echo(self, event: evt.Event) -> int:
        return status.SUCCESS

    def _on_store(self, event: evt.Event) -> int | Dataset:
        started = time.perf_counter()
        calling = str(event.assoc.requestor.ae_title).strip()
        try:
            request = cast(Any, event.request)
            affected_sop_instance_uid = validate_uid(
                request.AffectedSOPInstanceUID, "Affected SOP Instance UID"
            )
            data = event.encoded_dataset(include_meta=False)
            header = parse_dataset(data, str(event.context.transfer_syntax))
            if header.sop_instance_uid != affected_sop_instance_uid:
                raise DatasetError(
                    f"SOP Instance UID {header.sop_instance_uid} differs from the request's "
                    f"Affected SOP Instance UID {affected_sop_instance_uid}"
                )
        except (DatasetError, InvalidUIDError) as error:
            return self._refuse(status.STORE_CANNOT_UNDERSTAND, str(error), calling, event)

        try:
            meta = encode_file_meta(
                header.sop_class_uid, header.sop_instance_uid, header.transfer_syntax_uid, calling
            )
            # Hashed here; written, fsynced and renamed by a spool thread meanwhile.
            pending = self.spool.begin_write(
                header.study_instance_uid,
                header.series_instance_uid,
                header.sop_instance_uid,
                meta,
                data,
            )
        except OSError as error:
            return self._cannot_store(error, calling, event, header)
        spooled = pending.spooled

        # A C-STORE sub-operation of a C-MOVE this node asked for carries our AE title as
        # Move Originator (PS3.7 9.1.1.1): that is a prior coming in, never a study to process.
        move_originator = str(
            getattr(request, "MoveOriginatorApplicationEntityTitle", "") or ""
        ).strip()
        try:
            outcome = self.store.record_instance(
                header,
                path=str(spooled.path),
                size_bytes=spooled.size_bytes,
                calling_ae_title=calling,
                content_sha256=spooled.content_sha256,
                as_prior=move_originator == self.settings.ae_title,
                # committed only once the file and its folder are fsynced
                before_commit=pending.wait,
            )
        except Exception as error:
            failure = pending.failure()
            if isinstance(failure, OSError):
                return self._cannot_store(failure, calling, event, header)
            log.error("cannot record instance %s: %s", header.sop_instance_uid, error)
            # The file stays in the spool; reconciliation at start records it, and the
            # sender retries after this refusal, which the duplicate check absorbs.
            # No node event or audit record: both would wait for the same database again.
            return self._refuse(
                status.STORE_OUT_OF_RESOURCES,
                "database unavailable",
                calling,
                event,
                header,
                recorded=False,
            )

        if outcome.known is not None:
            changed = self._changed_duplicate(
                header, meta, data, spooled, outcome.known, calling, event
            )
            if changed is not None:
                return changed
        self.counters.add("stored" if outcome.new else "duplicates")
        activity = self._activity(event)
        if activity is not None:
            activity.add(header)
        if outcome.new and outcome.ours:
            self.counters.add("own_objects")
        elapsed = time.perf_counter() - started
        metrics.NODE_STORE_SECONDS.observe(elapsed)
        log.debug(
            "stored %s (study %s) from %s in %.1f ms%s",
            header.sop_instance_uid,
            header.study_instance_uid,
            calling,
            elapsed * 1000,
            _note(outcome),
        )
        return status.SUCCESS

    def _cannot_store(
        self, error: OSError, calling: str, event: evt.Event, header: InstanceHeader
    ) -> Dataset:
        log.error("cannot write instance %s: %s", header.sop_instance_uid, error)
        return self._refuse(
            status.STORE_OUT_OF_RESOURCES,
            f"cannot store: {error.strerror}",
            calling,
            event,
            header,
        )

    def _changed_duplicate(
        self,
        header: InstanceHeader,
        meta: bytes,
        data: bytes,
        spooled: SpooledFile,
        known: KnownInstance,
        calling: str,
        event: evt.Event,
    ) -> Dataset | int | None:
        """A SOP Instance UID seen before: None when the content is the same (the caller
        answers success as for any duplicate), else the answer to a changed duplicate."""
        first = known.content_sha256
        if first is None:  # recorded before hashes were kept: hash the file we have
            try:
                first = file_content_sha256(Path(known.path))
            except (OSError, DatasetError):
                first = ""
        if first == spooled.content_sha256:
            return None
        if not spooled.already_present and str(spooled.path) != known.path:
            # The new content names another study or series, so it landed beside the first.
            self.spool.discard(spooled.path)
        policy = self.settings.on_changed_duplicate
        same_place = (known.study_instance_uid, known.series_instance_uid) == (
            header.study_instance_uid,
            header.series_instance_uid,
        )
        action = policy
        if policy == "replace" and not same_place:
            # Replacing would move the instance to another study or series under one UID.
            action = "refuse"
        self.counters.add("changed_duplicates")
        log.warning(
            "C-STORE from %s: SOP Instance %s is known with other content (%s); %s",
            calling,
            header.sop_instance_uid,
            "same series" if same_place else "it now names another study or series",
            CHANGED_DUPLICATE_OUTCOME[action],
        )
        replaced_by = None
        try:
            if action == "replace":
                replaced = self.spool.write(
                    header.study_instance_uid,
                    header.series_instance_uid,
                    header.sop_instance_uid,
                    meta,
                    data,
                    replace=True,
                )
                replaced_by = (str(replaced.path), replaced.size_bytes)
            self.store.record_changed_duplicate(
                sop_instance_uid=header.sop_instance_uid,
                study_instance_uid=known.study_instance_uid,
                calling_ae_title=calling,
                first_content_sha256=first,
                received_content_sha256=spooled.content_sha256,
                action=action,
                replaced_by=replaced_by,
            )
        except Exception as error:
            log.error("cannot handle the changed duplicate %s: %s", header.sop_instance_uid, error)
            return self._refuse(
                status.STORE_OUT_OF_RESOURCES,
                "cannot record a changed duplicate",
                calling,
                event,
                header,
            )
        if action == "refuse":
            response = self._failure(
                status.STORE_REFUSED_CHANGED_DUPLICATE,
                "SOP Instance UID known with other content",
            )
            response.OffendingElement = [SOP_INSTANCE_UID_TAG]
            self._instance_refused(
                status.STORE_REFUSED_CHANGED_DUPLICATE,
                "SOP Instance UID known with other content",
                calling=calling,
                host=str(event.assoc.requestor.address),
                sop_instance_uid=header.sop_instance_uid,
                study_instance_uid=known.study_instance_uid,
                sop_class_uid=header.sop_class_uid,
                node_event=False,  # record_changed_duplicate wrote it, with both hashes
            )
            return response
        return status.SUCCESS

    def _refuse(
        self,
        code: int,
        reason: str,
        calling: str,
        event: evt.Event,
        header: InstanceHeader | None = None,
        *,
        recorded: bool = True,
    ) -> Dataset:
        activity = self._activity(event)
        if activity is not None:
            activity.refused += 1
        sop_instance_uid = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
        host = str(event.assoc.requestor.address)
        log.warning("C-STORE from %s (%s) refused (0x%04X): %s", calling, host, code, reason)
        self._instance_refused(
            code,
            reason,
            calling=calling,
            host=host,
            sop_instance_uid=sop_instance_uid,
            study_instance_uid=header.study_instance_uid if header else "",
            sop_class_uid=header.sop_class_uid if header else "",
            recorded=recorded,
        )
        return self._failure(code, reason)

    @staticmethod
    def _failure(code: int, reason: str) -> Dataset:
        response = Dataset()
        response.Status = code
        # LO: at most 64 characters, and a backslash would split it into several values.
        response.ErrorComment = reason.replace("\\", "/")[:64]
        return response


CHANGED_DUPLICATE_OUTCOME = {
    "keep-first": "kept the first",
    "replace": "replaced it",
    "refuse": "refused",
}

# (0008,0018) SOP Instance UID, as Offending Element (0000,0901) of a refused changed duplicate.
SOP_INSTANCE_UID_TAG = 0x00080018


# pynetdicom's own rejections (PS3.8 9.3.4): (result source, diagnostic) -> reason.
PYNETDICOM_REJECTIONS = {
    (0x03, 0x02): "local limit exceeded (max_associations associations open)",
    (0x03, 0x01): "temporary congestion",
    (0x02, 0x02): "protocol version not supported",
    (0x01, 0x02): "application context name not supported",
    (0x01, 0x03): "calling AE title not recognised",
    (0x01, 0x07): "called AE title not recognised",
}


def _note(outcome: RecordOutcome) -> str:
    if not outcome.new:
        return " (duplicate)"
    return " (pacsflow's own object, given back)" if outcome.ours else ""
