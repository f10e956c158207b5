"""The node as a client of the PACS: C-ECHO, C-STORE, C-FIND, C-MOVE (I/O).

Failures map onto the error tree: no connection, an aborted association or a timeout is a
:class:`PeerUnavailableError` (retried); "out of resources" is a :class:`PeerBusyError`
(retried); a permanent association rejection or a failure status is a :class:`PeerError`
(not retried). Every error names the peer and, when known, the study.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, Association, _config, evt
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from integrations.dicom import status
from integrations.errors import (
    DimseStatusError,
    PeerBusyError,
    PeerRejectedError,
    PeerUnavailableError,
)
from integrations.tls import client_handshake_failure, peer_context

if TYPE_CHECKING:
    from integrations.settings import Settings

log = logging.getLogger(__name__)


MAX_CONTEXTS = 128  # PS3.8: at most 128 presentation contexts per association


@dataclass(frozen=True)
class Peer:
    """Where a DICOM peer listens and who we are when we call it."""

    ae_title: str
    host: str
    port: int
    calling_ae_title: str
    timeout_seconds: float = 30.0
    # TCP connect and association negotiation; None: ``timeout_seconds``. A short one makes a
    # peer that is down or drops packets cost seconds, not the DIMSE timeout.
    connect_timeout_seconds: float | None = None
    role: str = "DICOM peer"  # how failure messages name it: "PACS"
    # (client context, name its certificate must carry): DICOM over TLS, never plaintext.
    tls: tuple[ssl.SSLContext, str] | None = None

    @property
    def label(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}" + (" (TLS)" if self.tls else "")

    @property
    def named(self) -> str:
        return f"{self.role} {self.label}"


def pacs_peer(settings: Settings, *, connect_timeout_seconds: float | None = None) -> Peer:
    """The site's ``[pacs]`` as this node calls it (stores, queries and moves alike)."""
    pacs = settings.pacs
    return Peer(
        ae_title=pacs.ae_title,
        host=pacs.host,
        port=pacs.port,
        calling_ae_title=settings.node.ae_title,
        timeout_seconds=pacs.timeout_seconds,
        connect_timeout_seconds=connect_timeout_seconds,
        role="PACS",
        tls=peer_context(pacs),
    )


def connect_failure(host: str, port: int, timeout: float) -> str:
    """Why a TCP connection to the peer fails, in the operating system's words.

    pynetdicom only logs the socket error; one more connection attempt names it.
    """
    try:
        with socket.create_connection((host, port), timeout=min(timeout, 5.0)):
            return "the connection dropped before the association was requested"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no answer within {min(timeout, 5.0):.0f} s"
    except socket.gaierror as error:
        return f"host name not resolved ({error.strerror})"
    except OSError as error:
        return error.strerror or type(error).__name__


@dataclass(frozen=True)
class MoveOutcome:
    completed: int
    failed: int
    warning: int


class DicomClient:
    """Short associations to one peer, one per operation."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    def _ae(self) -> AE:
        ae = AE(ae_title=self.peer.calling_ae_title)
        connect = self.peer.connect_timeout_seconds or self.peer.timeout_seconds
        ae.acse_timeout = connect
        ae.dimse_timeout = self.peer.timeout_seconds
        ae.network_timeout = self.peer.timeout_seconds
        ae.connection_timeout = connect
        return ae

    @contextmanager
    def _associate(self, contexts: list, study_instance_uid: str = "") -> Iterator[Association]:
        ae = self._ae()
        connected: list[bool] = []
        assoc = ae.associate(
            self.peer.host,
            self.peer.port,
            contexts=contexts,
            ae_title=self.peer.ae_title,
            evt_handlers=[(evt.EVT_CONN_OPEN, lambda _event: connected.append(True))],
            tls_args=self.peer.tls,
        )
        peer = self.peer
        negotiation = peer.connect_timeout_seconds or peer.timeout_seconds
        if not assoc.is_established:
            if assoc.is_rejected:
                primitive = assoc.acceptor.primitive
                result = getattr(primitive, "result", None)
                source = getattr(primitive, "result_source", None)
                diagnostic = getattr(primitive, "diagnostic", None)
                words = status.rejection_words(source, diagnostic)
                reason = (
                    f"{peer.named} rejected the association ({words};"
                    f" result {result}, source {source})"
                )
                advice = (
                    f"check that the {peer.role} knows our AE {peer.calling_ae_title}"
                    f" and that its AE title is {peer.ae_title}"
                )
                if result == 0x02:  # rejected-transient
                    raise PeerBusyError(
                        reason,
                        peer=peer.label,
                        study_instance_uid=study_instance_uid,
                        advice=f"the {peer.role} is busy; pacsflow retries",
                    )
                raise PeerRejectedError(
                    reason, peer=peer.label, study_instance_uid=study_instance_uid, advice=advice
                )
            if connected:
                cause = (
                    f"{peer.named} accepted the connection but aborted or did not answer"
                    f" the association request within {negotiation:.0f} s"
                )
                advice = f"check the {peer.role}'s log and that it accepts our AE {peer.calling_ae_title}"
            else:
                if peer.tls is None:
                    why = connect_failure(peer.host, peer.port, negotiation)
                else:
                    context, server_name = peer.tls
                    why = (
                        client_handshake_failure(
                            peer.host, peer.port, context, server_name, min(negotiation, 5.0)
                        )
                        or "the connection dropped before the association was requested"
                    )
                cause = f"{peer.named} refused the association ({why})"
                advice = (
                    f"check that the {peer.role} is up and listens on {peer.host}:{peer.port},"
                    f" and that our AE {peer.calling_ae_title} is registered"
                )
            raise PeerUnavailableError(
                cause, peer=peer.label, study_instance_uid=study_instance_uid, advice=advice
            )
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _check_alive(self, assoc: Association, service: str, study_instance_uid: str) -> None:
        if assoc.is_aborted or not assoc.is_established:
            raise PeerUnavailableError(
                f"{service} to {self.peer.label}: association lost",
                peer=self.peer.label,
                study_instance_uid=study_instance_uid,
            )

    def _raise_for_status(
        self, service: str, code: int, study_instance_uid: str, detail: str = ""
    ) -> None:
        if status.is_out_of_resources(code):
            raise PeerBusyError(
                f"{service} to {self.peer.label}: out of resources (0x{code:04X})",
                peer=self.peer.label,
                study_instance_uid=study_instance_uid,
            )
        raise DimseStatusError(
            service,
            code,
            peer=self.peer.label,
            study_instance_uid=study_instance_uid,
            detail=detail,
        )

    # -- services ---------------------------------------------------------------------------

    def echo(self) -> None:
        with self._associate([build_context(Verification)]) as assoc:
            response = assoc.send_c_echo()
            self._check_alive(assoc, "C-ECHO", "")
            code = int(getattr(response, "Status", -1))
            if code != status.SUCCESS:
                self._raise_for_status("C-ECHO", code, "")

    def store(self, datasets: Sequence[Dataset], *, study_instance_uid: str = "") -> list[int]:
        """C-STORE every dataset in one association; returns the status of each.

        Warnings (0xB000...) count as stored; any failure raises after the association ends.
        """
        if not datasets:
            return []
        wanted = sorted({(str(ds.SOPClassUID), _transfer_syntax(ds)) for ds in datasets})
        if len(wanted) > MAX_CONTEXTS:
            raise ValueError("too many distinct SOP classes for one association")
        contexts = [
            build_context(sop_class, [syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian])
            for sop_class, syntax in wanted
        ]
        with self._associate(contexts, study_instance_uid) as assoc:
            return [self._send_c_store(assoc, item, study_instance_uid) for item in datasets]

    def store_files(self, paths: Sequence[Path], *, study_instance_uid: str = "") -> list[int]:
        """C-STORE files in DICOM File Format as they are on disk, in one association.

        The encoded dataset is streamed from the file (no decode, no re-encode): a result
        object is encoded once, when it is built.
        """
        if not paths:
            return []
        metas = [read_file_meta_info(path) for path in paths]
        wanted = sorted({(str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID)) for m in metas})
        if len(wanted) > MAX_CONTEXTS:
            raise ValueError("too many distinct SOP classes for one association")
        contexts = [build_context(sop_class, [syntax]) for sop_class, syntax in wanted]
        with self._associate(contexts, study_instance_uid) as assoc, _streaming_from_files():
            return [self._send_c_store(assoc, path, study_instance_uid) for path in paths]

    def _send_c_store(
        self, assoc: Association, item: Dataset | Path, study_instance_uid: str
    ) -> int:
        """One C-STORE; its status code when success or warning, else the error raised."""
        response = assoc.send_c_store(item)
        self._check_alive(assoc, "C-STORE", study_instance_uid)
        code = int(getattr(response, "Status", -1))
        if code != status.SUCCESS and not status.is_warning(code):
            comment = str(getattr(response, "ErrorComment", "") or "")
            self._raise_for_status("C-STORE", code, study_instance_uid, comment)
        return code

    def find(self, query: Dataset, *, study_instance_uid: str = "") -> list[Dataset]:
        """Study Root C-FIND; returns the matches (identifiers)."""
        matches: list[Dataset] = []
        context = build_context(StudyRootQueryRetrieveInformationModelFind)
        with self._associate([context], study_instance_uid) as assoc:
            for response, identifier in assoc.send_c_find(
                query, StudyRootQueryRetrieveInformationModelFind
            ):
                self._check_alive(assoc, "C-FIND", study_instance_uid)
                code = int(getattr(response, "Status", -1))
                if status.is_pending(code):
                    if identifier is not None:
                        matches.append(identifier)
                    continue
                if code != status.SUCCESS:
                    self._raise_for_status("C-FIND", code, study_instance_uid)
        return matches

    def move(
        self, query: Dataset, destination_ae_title: str, *, study_instance_uid: str = ""
    ) -> MoveOutcome:
        """Study Root C-MOVE of the matched instances to ``destination_ae_title``."""
        context = build_context(StudyRootQueryRetrieveInformationModelMove)
        last = None
        with self._associate([context], study_instance_uid) as assoc:
            for response, _identifier in assoc.send_c_move(
                query, destination_ae_title, StudyRootQueryRetrieveInformationModelMove
            ):
                self._check_alive(assoc, "C-MOVE", study_instance_uid)
                last = response
                code = int(getattr(response, "Status", -1))
                if status.is_pending(code):
                    continue
                if code != status.SUCCESS and not status.is_warning(code):
                    self._raise_for_status("C-MOVE", code, study_instance_uid)
        if last is None:
            raise PeerUnavailableError(
                f"C-MOVE to {self.peer.label}: no response",
                peer=self.peer.label,
                study_instance_uid=study_instance_uid,
            )
        return MoveOutcome(
            completed=int(getattr(last, "NumberOfCompletedSuboperations", 0) or 0),
            failed=int(getattr(last, "NumberOfFailedSuboperations", 0) or 0),
            warning=int(getattr(last, "NumberOfWarningSuboperations", 0) or 0),
        )


_streaming_lock = threading.Lock()


@contextmanager
def _streaming_from_files() -> Iterator[None]:
    """pynetdicom sends a file's bytes undecoded only while this process-wide flag is set."""
    with _streaming_lock:
        previous = _config.STORE_SEND_CHUNKED_DATASET
        _config.STORE_SEND_CHUNKED_DATASET = True
        try:
            yield
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = previous


def _transfer_syntax(dataset: Dataset) -> str:
    meta = getattr(dataset, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    return str(syntax or ExplicitVRLittleEndian)
