"""The one exception tree of pacsflow (pure).

Every error raised at a peer boundary carries the context an IT team needs to act on it:
which peer, which study, which status. Retry policies look at one thing only, whether the
error is a :class:`TransientError`::

    PacsflowError
    ├── ConfigError                 bad configuration; names the key, stops the process at start
    ├── InvalidUIDError             a UID that is not a DICOM UID (never used as a path)
    ├── DatasetError                a received or loaded dataset that cannot be used
    ├── StoreError                  the application database refused an operation
    ├── ModelError                  a model package or an analyzer failed
    │   ├── PackageError            a package refused: missing, bad manifest, checksum, shapes
    │   └── AIUnavailableError      no device could run the model (out of memory on GPU and CPU)
    ├── PeerError                   a peer answered, and the answer was a failure
    │   ├── DimseStatusError        a DIMSE service returned a failure status
    │   └── PeerRejectedError       a peer refused permanently (association rejected-permanent, HL7 AR...)
    └── TransientError              worth retrying: the same request may succeed later
        ├── PeerUnavailableError    no connection, association aborted, timeout
        └── PeerBusyError           a peer said "try later" (DIMSE 0xA7xx out of resources, HTTP 503...)

Peer errors may carry ``advice``: what the operator should check, in plain words (a failed
run's state message in Prefect ends with it).

``TransientError`` and ``PeerError`` are siblings on purpose: a peer that refused is not
retried, a peer that could not be reached is.
"""

from __future__ import annotations


class PacsflowError(Exception):
    """Base of every error pacsflow raises on purpose."""


class ConfigError(PacsflowError):
    """The configuration is invalid; the message names the key and where it came from."""


class InvalidUIDError(PacsflowError, ValueError):
    """A value that must be a DICOM UID is not one."""

    def __init__(self, value: object, what: str = "UID") -> None:
        self.value = value
        self.what = what
        super().__init__(f"invalid {what}: {value!r}")


class DatasetError(PacsflowError):
    """A dataset is malformed, truncated or lacks what pacsflow needs."""


class StoreError(PacsflowError):
    """The application database refused an operation."""


class ModelError(PacsflowError):
    """A model could not be loaded or run."""


class PackageError(ModelError):
    """A model package is refused (missing, bad manifest, checksum or shape mismatch)."""


class AIUnavailableError(ModelError):
    """The model could not run anywhere (out of memory on the GPU at batch 1, then on the
    CPU): the study is "AI unavailable", never "no finding"; a rerun may succeed."""

    advice = (
        "AI unavailable for this study (not 'no finding'): free GPU or host memory (other"
        " processes, [models] batch sizes), then rerun the study (`pacsflow rerun`)"
    )


class PeerError(PacsflowError):
    """A peer answered with a failure that retrying will not fix."""

    def __init__(
        self, message: str, *, peer: str = "", study_instance_uid: str = "", advice: str = ""
    ) -> None:
        self.peer = peer
        self.study_instance_uid = study_instance_uid
        self.advice = advice  # what the operator should check, in plain words
        super().__init__(message)


class DimseStatusError(PeerError):
    """A DIMSE service (C-STORE, C-FIND, C-MOVE) answered with a failure status."""

    def __init__(
        self,
        service: str,
        status: int,
        *,
        peer: str = "",
        study_instance_uid: str = "",
        detail: str = "",
    ) -> None:
        self.service = service
        self.status = status
        text = f"{service} to {peer or 'peer'} failed with status 0x{status:04X}"
        if detail:
            text += f": {detail}"
        if study_instance_uid:
            text += f" (study {study_instance_uid})"
        super().__init__(text, peer=peer, study_instance_uid=study_instance_uid)


class PeerRejectedError(PeerError):
    """A peer refused permanently (association rejected-permanent, HL7 AR, HTTP 4xx)."""


class TransientError(PacsflowError):
    """A failure worth retrying: the same request may succeed later."""

    def __init__(
        self, message: str, *, peer: str = "", study_instance_uid: str = "", advice: str = ""
    ) -> None:
        self.peer = peer
        self.study_instance_uid = study_instance_uid
        self.advice = advice  # what the operator should check, in plain words
        super().__init__(message)


class PeerUnavailableError(TransientError):
    """A peer could not be reached: refused connection, aborted association, timeout."""


class PeerBusyError(TransientError):
    """A peer asked us to try later (out of resources, 503, HL7 AE on a busy interface)."""


def is_transient(error: BaseException) -> bool:
    """True for errors a retry may fix (:func:`integrations.retry.disposition_of` asks this)."""
    return isinstance(error, TransientError)
