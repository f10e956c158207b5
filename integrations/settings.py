"""The one settings model of pacsflow, loaded once per process and passed down (pure).

Sources, strongest first: keyword overrides, environment variables ``PACSFLOW_<SECTION>__<KEY>``
(lists and tables as JSON, e.g. ``PACSFLOW_NODE__ALLOWED_CALLERS='["ORTHANC"]'``), then the TOML
file (``--config``, ``PACSFLOW_CONFIG``, or ``pacsflow.toml`` in the working directory). Unknown
sections and keys are errors, in the file and in ``PACSFLOW_*`` variables alike, and the message
names the nearest known key: a misspelt key stops the process instead of being silently ignored.
The only other ``PACSFLOW_*`` variables allowed are those in :data:`OTHER_ENVIRONMENT_VARIABLES`
and the secrets that a ``*_env`` setting names (``[fhir] bearer_env`` ...).
Relative paths in the TOML file are relative to the file's folder.

Secrets (database passwords, tokens) come from the environment or Prefect Secret blocks,
never from a TOML file kept in git.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from datetime import time as dt_time
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from integrations.dicom.ae import AllowedCaller, normalize_ae_title
from integrations.dicom.body_part import BodyPartOverride
from integrations.dicom.priority import DEFAULT_RULES, PriorityRule
from integrations.dicom.routing import Rule
from integrations.dicom.uids import is_valid_uid
from integrations.errors import ConfigError

CONFIG_ENV_VAR = "PACSFLOW_CONFIG"
DEFAULT_CONFIG_NAME = "pacsflow.toml"
ENV_PREFIX = "PACSFLOW_"
ENV_NESTED_DELIMITER = "__"
# PACSFLOW_* variables that are not settings: the config path, process knobs read before the
# settings exist, the test and bench databases, and the folder prefect.yaml's pull step uses.
OTHER_ENVIRONMENT_VARIABLES = frozenset(
    {
        CONFIG_ENV_VAR,
        "PACSFLOW_LOG_LEVEL",
        "PACSFLOW_TORCH_THREADS",
        "PACSFLOW_TEST_POSTGRES",
        "PACSFLOW_BENCH_POSTGRES",
        "PACSFLOW_HOME",
    }
)

AETitle = Annotated[str, AfterValidator(normalize_ae_title)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenerTlsSettings(Section):
    """A TLS port beside a listener's plain one (BCP 195 profile, :mod:`integrations.tls`).

    ``tls_port`` 0 leaves it off. ``tls_cert`` / ``tls_key``: the listener's certificate
    chain and key (PEM); ``tls_ca``: the CAs whose client certificates it trusts. With
    ``require_client_cert`` a client without a trusted certificate is refused (DICOM and
    ATNA secure node practice); without it a certificate is still checked when one is sent.
    """

    tls_port: Annotated[int, Field(ge=0, le=65535)] = 0
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    require_client_cert: bool = True

    @model_validator(mode="after")
    def _tls_complete(self) -> ListenerTlsSettings:
        if not self.tls_port:
            return self
        if not (self.tls_cert and self.tls_key):
            raise ValueError("tls_port needs tls_cert and tls_key")
        if self.require_client_cert and not self.tls_ca:
            raise ValueError(
                "require_client_cert needs tls_ca (the CAs clients are checked against)"
            )
        if self.tls_port == getattr(self, "port", None):
            raise ValueError("tls_port must differ from port")
        return self


class ClientTlsSettings(Section):
    """TLS on connections pacsflow opens to this peer (BCP 195 profile, :mod:`integrations.tls`).

    ``tls`` turns it on (never a fallback to plaintext). The peer's certificate is checked
    against ``tls_ca`` (empty: the system CAs) and its name against ``tls_server_name``
    (empty: ``host``); ``tls_cert`` / ``tls_key`` are pacsflow's client certificate.
    """

    tls: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_server_name: str = ""

    @model_validator(mode="after")
    def _client_pair(self) -> ClientTlsSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together")
        return self


class AllowedCallerEntry(Section):
    ae_title: AETitle
    host: str | None = None


def _default_callers() -> list[str | AllowedCallerEntry]:
    return ["ORTHANC"]


class NodeSettings(ListenerTlsSettings):
    """The DICOM node: who we are, where we listen, who may call, where instances land."""

    ae_title: AETitle = "PACSFLOW"
    host: str = "127.0.0.1"
    port: Port = 11112
    storage_dir: Path = Path("var/pacsflow")
    allowed_callers: list[AETitle | AllowedCallerEntry] = Field(
        default_factory=lambda: _default_callers()
    )
    # 0 means "no limit" to pynetdicom; a large fixed value keeps memory bounded per PDU.
    max_pdu_size: Annotated[int, Field(ge=0)] = 4 * 1024 * 1024
    max_associations: Annotated[int, Field(ge=1, le=1000)] = 16
    acse_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    dimse_timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    network_timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    # A connection that has not sent a whole A-ASSOCIATE-RQ by then is closed; until it has,
    # it does not count against max_associations.
    negotiation_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    # Connections open at once from one source address (associations and ones negotiating).
    max_connections_per_source: Annotated[int, Field(ge=1, le=1000)] = 8
    # fsync each received file before answering success; turn off only on battery-backed storage.
    fsync: bool = True
    # A known SOP Instance UID arriving with different content is always logged and recorded
    # (node_events, both content hashes); then keep-first answers success and keeps the first
    # copy (as most archives do), replace swaps the new content in, refuse answers a failure.
    on_changed_duplicate: Literal["keep-first", "replace", "refuse"] = "keep-first"

    def caller_policy(self) -> tuple[AllowedCaller, ...]:
        return tuple(
            AllowedCaller(entry)
            if isinstance(entry, str)
            else AllowedCaller(entry.ae_title, entry.host)
            for entry in self.allowed_callers
        )

    @property
    def spool_dir(self) -> Path:
        return self.storage_dir / "spool"

    @property
    def results_dir(self) -> Path:
        return self.storage_dir / "results"


class PacsSettings(ClientTlsSettings):
    """The PACS pacsflow queries, moves priors from, and stores results to."""

    ae_title: AETitle = "ORTHANC"
    host: str = "127.0.0.1"
    port: Port = 4242
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    # The PACS's own REST API where it has one (Orthanc: http://host:8042), which ``pacsflow
    # doctor`` uses to have the PACS C-ECHO the node and to read how the PACS registered it.
    # Empty: no API; doctor tells the operator to run that C-ECHO from the PACS.
    rest_url: str = ""
    rest_username: str = ""
    rest_password_env: str = "PACSFLOW_PACS_REST_PASSWORD"
    # The PACS's name for the node (Orthanc's modality id); empty: found by the node's AE title.
    node_modality_id: str = ""

    @field_validator("rest_url")
    @classmethod
    def _rest_url(cls, value: str) -> str:
        return _http_url(value)


class StorageSettings(Section):
    """Disk safety for ``[node] storage_dir`` (spool, results, the embedded database)."""

    # Below this share of the file system free, ``pacsflow doctor`` fails the disk check
    # (and warns below twice this), and the DICOM node rejects new associations as transient
    # (senders retry later; open ones go on storing) and tells [results] alert_team once.
    # 0 turns the node's check off.
    min_free_percent: Annotated[float, Field(ge=0, lt=100)] = 10.0


class DatabaseSettings(Section):
    """PostgreSQL for pacsflow's own state; empty ``url`` = embedded server in the storage dir."""

    url: str = ""
    pool_size: Annotated[int, Field(ge=1, le=200)] = 8

    @field_validator("url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL, or empty for the embedded server")
        return value


class StudySettings(Section):
    """When a study counts as complete ("on study close, never on arrival")."""

    quiet_seconds: Annotated[float, Field(gt=0, le=86400)] = 5.0
    # Hard ceiling: a study still receiving after this long is closed anyway.
    max_open_seconds: Annotated[float, Field(gt=0, le=7 * 86400)] = 1800.0
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 0.1

    @model_validator(mode="after")
    def _ceiling_above_quiet(self) -> StudySettings:
        if self.max_open_seconds < self.quiet_seconds:
            raise ValueError("max_open_seconds must not be shorter than quiet_seconds")
        return self


def _compile_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a valid regular expression: {error}") from error
    return value


def _validate_sop_classes(values: list[str]) -> list[str]:
    for value in values:
        if not is_valid_uid(value):
            raise ValueError(f"{value!r} is not a SOP Class UID")
    return values


class RoutingRule(Section):
    """One routing rule: every condition given must match a series for its analyzers to run.

    ``body_part`` and ``modality`` compare case-insensitively with BodyPartExamined and Modality;
    ``protocol`` is a regular expression searched in ProtocolName and SeriesDescription.
    """

    name: str
    modality: list[str] = Field(default_factory=list)
    body_part: list[str] = Field(default_factory=list)
    protocol: Annotated[str | None, AfterValidator(_compile_regex)] = None
    sop_class: Annotated[list[str], AfterValidator(_validate_sop_classes)] = Field(
        default_factory=list
    )
    analyzers: list[str] = Field(min_length=1)


class BodyPartOverrideRule(Section):
    """A site's body part for series from a station, a calling AE title or a protocol.

    Overrides come before every header (Anatomic Region Sequence, BodyPartExamined,
    descriptions); the first override whose conditions all hold wins. Station Name and the
    calling AE title compare case-insensitively; ``protocol`` is a regular expression searched
    in ProtocolName and SeriesDescription.
    """

    body_part: Annotated[str, Field(min_length=1, max_length=16)]
    station_name: str | None = None
    calling_ae_title: str | None = None
    protocol: Annotated[str | None, AfterValidator(_compile_regex)] = None

    @model_validator(mode="after")
    def _has_a_condition(self) -> BodyPartOverrideRule:
        if self.station_name is None and self.calling_ae_title is None and self.protocol is None:
            raise ValueError(
                "a body part override needs station_name, calling_ae_title or protocol"
            )
        return self


class RoutingSettings(Section):
    rules: list[RoutingRule] = Field(default_factory=list)
    body_part_overrides: list[BodyPartOverrideRule] = Field(default_factory=list)

    def to_overrides(self) -> tuple[BodyPartOverride, ...]:
        return tuple(
            BodyPartOverride(
                body_part=override.body_part.upper(),
                station_name=override.station_name,
                calling_ae_title=override.calling_ae_title,
                protocol=override.protocol,
            )
            for override in self.body_part_overrides
        )

    def to_rules(self) -> tuple[Rule, ...]:
        return tuple(
            Rule(
                name=rule.name,
                analyzers=tuple(rule.analyzers),
                modality=tuple(rule.modality),
                body_part=tuple(rule.body_part),
                protocol=rule.protocol,
                sop_class=tuple(rule.sop_class),
            )
            for rule in self.rules
        )

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[RoutingRule]) -> list[RoutingRule]:
        names = [rule.name for rule in rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique, repeated: {', '.join(duplicates)}")
        return rules


class ModelsSettings(Section):
    """Where model packages live and which device runs them."""

    dir: Path = Path("var/models")
    device: str = "auto"
    # Build the demo packages (trained on generated images) when a routed analyzer has none.
    # Only `make demo` (pacsflow.toml) and the tests turn it on.
    build_demo_if_missing: bool = False
    # Load packages whose manifest says clinical_use = false (demo and research weights);
    # every output then says NOT FOR CLINICAL USE. Off: the worker refuses to start with them.
    allow_non_clinical: bool = False

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value != "auto" and not re.fullmatch(r"cpu|cuda(:\d+)?", value):
            raise ValueError("must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return value


def default_worker_count(cpu_count: int | None = None) -> int:
    """Half the CPU cores, at least 2 and at most 8.

    At least two, so that one long study never holds the queue alone; at most eight, because
    every warm worker keeps its own copy of the models in memory.
    """
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(2, min(8, cores // 2))


class PriorityRuleSettings(Section):
    """A study-type rule of the dispatch priority: matching series get ``rank`` (0-99).

    Conditions as in ``[[routing.rules]]``: ``modality`` and ``body_part`` compare
    case-insensitively, ``protocol`` is a regex searched in ProtocolName and
    SeriesDescription; a rule without conditions matches every series.
    """

    name: str
    rank: Annotated[int, Field(ge=0, le=99)]
    modality: list[str] = Field(default_factory=list)
    body_part: list[str] = Field(default_factory=list)
    protocol: Annotated[str | None, AfterValidator(_compile_regex)] = None


WorkerRoute = Literal["auto", "warm", "work-pool"]
DEFAULT_WORK_POOL = "pacsflow"  # the work pool and queue prefect.yaml declares
DEFAULT_WORK_QUEUE = "studies"


class WorkerSettings(Section):
    """Who executes process-study runs: warm workers, or the workers of a Prefect work pool.

    ``route = "warm"``: ``count`` long-lived processes run process-study in-process with the
    models loaded (the fast route). ``route = "work-pool"``: every closed study becomes a
    scheduled run of the process-study deployment on ``work_pool`` / ``work_queue``, executed
    by plain ``prefect worker start --pool <work_pool>`` processes on any host (the scale-out
    route). ``"auto"``: warm when ``count`` >= 1, the work pool when ``count = 0``.
    """

    # default: see default_worker_count
    count: Annotated[int, Field(ge=0, le=64)] = Field(default_factory=default_worker_count)
    lease_seconds: Annotated[float, Field(ge=5, le=3600)] = 15.0
    heartbeat_seconds: Annotated[float, Field(gt=0, le=600)] = 5.0
    # Study-type rules, first match per series; None: the defaults in integrations.dicom.priority
    priority_rules: list[PriorityRuleSettings] | None = None
    route: WorkerRoute = "auto"
    work_pool: Annotated[str, Field(min_length=1)] = DEFAULT_WORK_POOL
    work_queue: Annotated[str, Field(min_length=1)] = DEFAULT_WORK_QUEUE
    # Work-pool route: how often the dispatcher looks for queued studies and finished runs.
    dispatch_poll_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    # The express lane: this many of the `count` warm workers take only studies of at most
    # `express_max_images` images (frames included), so a radiograph never waits behind long
    # studies that every other worker holds. None: 1 when count >= 2, else 0.
    express_workers: Annotated[int, Field(ge=0, le=63)] | None = None
    express_max_images: Annotated[int, Field(ge=1, le=100_000)] = 20
    # With an express lane, the other workers run at this CPU niceness (0-19): when the CPU is
    # contended a short study's worker is scheduled first; idle CPU is still theirs.
    general_nice: Annotated[int, Field(ge=0, le=19)] = 5

    @model_validator(mode="after")
    def _someone_processes(self) -> WorkerSettings:
        if self.route == "warm" and self.count == 0:
            raise ValueError("route 'warm' with count = 0 would process no study")
        return self

    @property
    def uses_work_pool(self) -> bool:
        return self.route == "work-pool" or (self.route == "auto" and self.count == 0)

    @property
    def warm_count(self) -> int:
        """How many warm workers ``pacsflow serve`` starts (none on the work-pool route)."""
        return 0 if self.uses_work_pool else self.count

    @property
    def express_count(self) -> int:
        """How many of the warm workers are express workers."""
        if self.uses_work_pool:
            return 0
        if self.express_workers is None:
            return 1 if self.count >= 2 else 0
        return self.express_workers

    @model_validator(mode="after")
    def _someone_takes_long_studies(self) -> WorkerSettings:
        if not self.uses_work_pool and self.express_count >= self.count:
            raise ValueError(
                f"express_workers = {self.express_count} of count = {self.count} warm workers"
                " would leave no worker for studies over express_max_images images"
            )
        return self

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> WorkerSettings:
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ValueError("heartbeat_seconds must be at most half of lease_seconds")
        return self

    @field_validator("priority_rules")
    @classmethod
    def _unique_priority_rule_names(
        cls, rules: list[PriorityRuleSettings] | None
    ) -> list[PriorityRuleSettings] | None:
        names = [rule.name for rule in rules or ()]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique, repeated: {', '.join(duplicates)}")
        return rules

    def to_priority_rules(self) -> tuple[PriorityRule, ...]:
        if self.priority_rules is None:
            return DEFAULT_RULES
        return tuple(
            PriorityRule(
                Rule(
                    name=rule.name,
                    analyzers=(),
                    modality=tuple(rule.modality),
                    body_part=tuple(rule.body_part),
                    protocol=rule.protocol,
                ),
                rule.rank,
            )
            for rule in self.priority_rules
        )


class PrefectSettings(Section):
    """How pacsflow talks to Prefect when it starts the server itself (PREFECT_API_URL unset)."""

    server_host: str = "127.0.0.1"
    server_port: Port = 4200
    # The address browsers use for the Prefect UI and its API, when it is not
    # http://server_host:server_port (server_host 0.0.0.0, a reverse proxy, TLS in front).
    public_url: str = ""


ResultCarrier = Literal["sr", "gsps", "secondary_capture", "segmentation", "parametric_map"]
SECONDARY_CAPTURE_CAPTION = "AI overlay — not for primary diagnosis"
DEFAULT_CARRIERS: tuple[ResultCarrier, ...] = ("sr", "gsps", "secondary_capture")


class ResultsSettings(Section):
    """The per-site output profile: which result objects go back to the PACS, and how they look.

    Viewer support differs (some render SEG and Parametric Maps but not GSPS, others the
    reverse), so the carriers are chosen per site. The SR is always produced.
    """

    carriers: list[ResultCarrier] = Field(default_factory=lambda: list(DEFAULT_CARRIERS))
    # General Equipment of every result object: pacsflow is the device that creates them.
    manufacturer: Annotated[str, Field(min_length=1, max_length=64)] = "pacsflow"
    # Empty: copy Institution Name from the source images.
    institution_name: Annotated[str, Field(max_length=64)] = ""
    # Result series get numbers from here on, one offset per carrier kind.
    series_number_base: Annotated[int, Field(ge=1, le=2**31 - 100)] = 9000
    secondary_capture_caption: Annotated[str, Field(min_length=1, max_length=64)] = (
        SECONDARY_CAPTURE_CAPTION
    )
    # Iso-contour levels of the heatmap, as fractions of its peak, lowest first.
    contour_levels: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=lambda: [0.5, 0.8], min_length=1, max_length=4
    )
    max_contours_per_level: Annotated[int, Field(ge=1, le=64)] = 8
    # Secondary Capture blending: heatmap values below the floor stay transparent.
    overlay_opacity: Annotated[float, Field(gt=0, le=1)] = 0.45
    overlay_floor: Annotated[float, Field(ge=0, lt=1)] = 0.2
    # Delivery through the results outbox (``pacsflow results-sender``): the backoff after
    # each failed attempt (the last value repeats, spread by +/- retry_jitter), how long a
    # result is retried before it is marked failed (with an alert), and the age of the oldest
    # undelivered result that raises an alert to ``alert_team`` (an [escalation] team; empty:
    # the alert is logged at CRITICAL only).
    retry_delays_seconds: list[Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: [5.0, 15.0, 30.0, 60.0, 120.0, 300.0], min_length=1
    )
    retry_jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    give_up_after_hours: Annotated[float, Field(gt=0, le=24 * 365)] = 72.0
    alert_after_minutes: Annotated[float, Field(gt=0)] = 15.0
    alert_team: str = ""
    # While deliveries to a destination are backing off, it is asked with a C-ECHO this often;
    # when it answers, everything waiting for it is due at once (recovery in seconds, whatever
    # the backoff had reached).
    probe_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0

    @field_validator("carriers")
    @classmethod
    def _sr_always_and_unique(cls, carriers: list[str]) -> list[str]:
        if "sr" not in carriers:
            raise ValueError("must include 'sr': the structured report is always produced")
        if len(set(carriers)) != len(carriers):
            raise ValueError("carriers must not repeat")
        return carriers

    @field_validator("contour_levels")
    @classmethod
    def _ascending_levels(cls, levels: list[float]) -> list[float]:
        if levels != sorted(set(levels)):
            raise ValueError("contour levels must be strictly ascending")
        return levels


class PriorsSettings(Section):
    """Prior-study comparison: which earlier study of the same patient is compared, and how."""

    enabled: bool = True
    lookback_days: Annotated[int, Field(ge=1, le=36500)] = 730
    # Earlier studies must match the current modality; and the body part when both have one.
    same_body_part: bool = True
    # At most this many C-FIND matches are considered (newest first).
    max_candidates: Annotated[int, Field(ge=1, le=1000)] = 20
    # Connect and association wait for the prior search: a PACS that is down or drops packets
    # costs the run at most about this long, then the run goes on with "no prior".
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 3.0


def _check_matcher(labels: list[str], codes: list[str], label_pattern: str | None) -> None:
    if not (labels or codes or label_pattern):
        raise ValueError("give at least one of labels, codes or label_pattern")
    for code in codes:
        if ":" not in code:
            raise ValueError(f"code {code!r} must be written SCHEME:VALUE (e.g. SCT:36118008)")


class UrgencyRuleSettings(Section):
    """``[[urgency.rules]]``: findings matching labels / codes / label_pattern (and, when
    given, produced by one of ``analyzers``) with probability >= ``min_probability`` (unset:
    the model's operating threshold) get ``tier``. The first matching rule fires."""

    name: str
    tier: Literal["Critical", "Urgent", "Routine"]
    labels: list[str] = Field(default_factory=list)
    codes: list[str] = Field(default_factory=list)
    label_pattern: Annotated[str | None, AfterValidator(_compile_regex)] = None
    analyzers: list[str] = Field(default_factory=list)
    min_probability: Annotated[float | None, Field(ge=0.0, le=1.0)] = None

    @model_validator(mode="after")
    def _has_matcher(self) -> UrgencyRuleSettings:
        _check_matcher(self.labels, self.codes, self.label_pattern)
        return self


class UrgencySettings(Section):
    """Site urgency rules, applied before the manifest tiers and the built-in defaults."""

    rules: list[UrgencyRuleSettings] = Field(default_factory=list)
    # The built-in defaults (Critical: tension pneumothorax, aortic dissection, intracranial
    # hemorrhage, acute stroke; Urgent: pneumothorax, fracture, mass) after the site rules.
    use_default_rules: bool = True

    def to_rules(self) -> Any:
        """The rules as :class:`integrations.urgency.UrgencyRules`."""
        from integrations.urgency import rules_from_data

        return rules_from_data(
            (rule.model_dump() for rule in self.rules), use_defaults=self.use_default_rules
        )

    @field_validator("rules")
    @classmethod
    def _unique_rule_names(cls, rules: list[UrgencyRuleSettings]) -> list[UrgencyRuleSettings]:
        names = [rule.name for rule in rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique, repeated: {', '.join(duplicates)}")
        return rules


EscalationChannelName = Literal["webhook", "pager", "email", "sms", "hl7"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_WEEKDAYS: list[Weekday] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DEFAULT_CHANNELS: tuple[EscalationChannelName, ...] = ("webhook", "pager", "email", "hl7")
TierName = Literal["Critical", "Urgent", "Routine"]
DEFAULT_PRIORITY_TIERS: tuple[TierName, ...] = ("Critical", "Urgent")


class PersonSettings(Section):
    """``[escalation.people.<id>]``: one person who can be notified, and their addresses."""

    name: str
    email: str = ""
    # A mail-to-SMS gateway address (e.g. 5551234@sms.example.org): gets the short text.
    sms_email: str = ""
    pager: str = ""  # the pager broker's recipient ID
    hl7_id: str = ""  # provider ID in the EMR (XCN-1), for the HL7 alert's result copies


class ShiftSettings(Section):
    """One on-call shift: ``person`` is on call on ``days`` from ``start`` to ``end`` (local
    time of ``escalation.timezone``). ``end`` before ``start`` runs past midnight; ``start``
    equal to ``end`` means all day."""

    person: str
    days: list[Weekday] = Field(default_factory=lambda: list(ALL_WEEKDAYS))
    start: dt_time = dt_time(0, 0)
    end: dt_time = dt_time(0, 0)


class TeamSettings(Section):
    """``[escalation.teams.<id>]``: who is on call, who backs them up, and how to reach them."""

    display_name: str = ""
    # Tried in this order; ``delivery = "first"`` stops at the first channel that delivered,
    # ``"all"`` sends on every channel (in parallel).
    channels: list[EscalationChannelName] = Field(
        default_factory=lambda: list(DEFAULT_CHANNELS), min_length=1
    )
    delivery: Literal["first", "all"] = "first"
    on_call: list[ShiftSettings] = Field(default_factory=list)
    backups: list[str] = Field(default_factory=list)  # person IDs: level 1, 2, ...
    webhook_url: str = ""  # overrides escalation.webhook_url for this team
    ack_timeout_seconds: Annotated[float | None, Field(gt=0)] = None


class EscalationRuleSettings(Section):
    """``[[escalation.rules]]``: Critical findings matching labels / codes / label_pattern go
    to ``team``. The first matching rule wins."""

    name: str
    team: str
    labels: list[str] = Field(default_factory=list)
    codes: list[str] = Field(default_factory=list)
    label_pattern: Annotated[str | None, AfterValidator(_compile_regex)] = None
    analyzers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_matcher(self) -> EscalationRuleSettings:
        _check_matcher(self.labels, self.codes, self.label_pattern)
        return self


def _http_url(value: str) -> str:
    if value and not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class EscalationSettings(Section):
    """Critical findings to people: teams, rules, rosters, channels, acknowledgement.

    Secrets (``webhook_secret``, ``smtp_password``, ``pager_token``) come from the environment
    (``PACSFLOW_ESCALATION__WEBHOOK_SECRET`` ...); the escalation sender refuses to start when
    the TOML file holds one. They are left out of dumps, so ``settings_environment`` never
    hands a child process a masked value: children inherit them from the environment.
    """

    people: dict[str, PersonSettings] = Field(default_factory=dict)
    teams: dict[str, TeamSettings] = Field(default_factory=dict)
    rules: list[EscalationRuleSettings] = Field(default_factory=list)
    # Built-in routes after the site rules, for the teams that exist: tension pneumothorax and
    # aortic dissection -> "surgery", intracranial hemorrhage -> "neurosurgery", acute stroke
    # -> "stroke".
    use_default_rules: bool = True
    default_team: str = ""  # for a Critical finding no rule routes
    timezone: str = "UTC"  # of the on-call shifts
    ack_timeout_seconds: Annotated[float, Field(gt=0)] = 300.0
    # After this many unacknowledged rounds the escalation stops re-sending and alerts.
    max_rounds: Annotated[int, Field(ge=1, le=1000)] = 12
    first_notification_deadline_seconds: Annotated[float, Field(gt=0)] = 60.0
    # Links carried by every notification: the study (placeholders {study_instance_uid} and
    # {accession_number}) and the acknowledge page served by the escalation service.
    study_link_template: str = ""
    # Pages, e-mails and SMS end up on lock screens and in mailboxes: by default they say tier,
    # finding, ward and links only. true adds the accession number (and, in the signed
    # webhook, the patient ID). The HL7 alert to the EMR always carries what the EMR needs.
    include_identifiers: bool = False
    base_url: HttpUrl = "http://127.0.0.1:8470"
    listen_host: str = "127.0.0.1"
    listen_port: Port = 8470
    webhook_url: HttpUrl = ""
    webhook_secret: SecretStr = Field(default=SecretStr(""), exclude=True)
    smtp_host: str = "127.0.0.1"
    smtp_port: Port = 25
    smtp_from: str = "pacsflow@localhost"
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: SecretStr = Field(default=SecretStr(""), exclude=True)
    pager_url: HttpUrl = ""
    pager_token: SecretStr = Field(default=SecretStr(""), exclude=True)
    hl7_receiving_application: str = "EMR"
    hl7_receiving_facility: str = "HOSPITAL"
    # Per channel: attempts and the pauses between them, and the time one attempt may take.
    attempts_per_channel: Annotated[int, Field(ge=1, le=10)] = 3
    retry_delays_seconds: list[Annotated[float, Field(ge=0, le=60)]] = Field(
        default_factory=lambda: [0.5, 2.0]
    )
    send_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    # At most this long on one channel (all attempts) before falling through to the next, so
    # a black-holed endpoint cannot eat the 60-second budget.
    channel_budget_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    # The escalation service: how often it looks for due re-sends, and how long a claimed
    # escalation stays with one sender before another may take it over.
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    claim_seconds: Annotated[float, Field(ge=5, le=600)] = 120.0
    # Retry pause for an escalation no channel could deliver.
    undelivered_retry_seconds: Annotated[float, Field(gt=0, le=600)] = 5.0
    # /api/escalations and /metrics answer a console login, or this bearer token (the name of
    # the environment variable holding it; unset = login only), for monitoring.
    api_bearer_env: str = "PACSFLOW_ESCALATION_API_TOKEN"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @model_validator(mode="after")
    def _references_exist(self) -> EscalationSettings:
        problems = []
        for team_id, team in self.teams.items():
            for shift in team.on_call:
                if shift.person not in self.people:
                    problems.append(f"teams.{team_id}.on_call: unknown person {shift.person!r}")
            for person in team.backups:
                if person not in self.people:
                    problems.append(f"teams.{team_id}.backups: unknown person {person!r}")
            if not team.on_call and not team.backups:
                problems.append(f"teams.{team_id}: nobody on call and no backups")
        for rule in self.rules:
            if rule.team not in self.teams:
                problems.append(f"rules.{rule.name}: unknown team {rule.team!r}")
        if self.default_team and self.default_team not in self.teams:
            problems.append(f"default_team: unknown team {self.default_team!r}")
        names = [rule.name for rule in self.rules]
        problems.extend(
            f"rules: name {name!r} repeated"
            for name in sorted({n for n in names if names.count(n) > 1})
        )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class WorklistSettings(Section):
    """How the tier reaches the PACS/RIS worklist: an HL7 priority update through the outbox,
    to the ``[ris]`` endpoint."""

    # none | orm_o01 (ORM^O01, ORC-1 order control) | omi_o23 (OMI^O23, IHE imaging order)
    route: Literal["none", "orm_o01", "omi_o23"] = "none"
    # Tiers that send an update (a Routine update changes nothing in most RIS).
    send_tiers: list[TierName] = Field(default_factory=lambda: list(DEFAULT_PRIORITY_TIERS))
    order_control: Literal["XO", "SC"] = "XO"
    sending_application: str = "PACSFLOW"
    sending_facility: str = "PACSFLOW"
    receiving_application: str = "RIS"
    receiving_facility: str = "HOSPITAL"


HL7_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
RetryDelays = Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)]


class Hl7SenderSettings(Section):
    """``[[hl7.allowed_senders]]``: one system allowed to send ADT. Every key given must match:
    ``application`` MSH-3 and ``facility`` MSH-4 (namespace ID, first component; case does not
    matter), ``host`` the source IP address of the connection."""

    application: str = ""
    facility: str = ""
    host: str = ""

    @model_validator(mode="after")
    def _names_someone(self) -> Hl7SenderSettings:
        if not (self.application or self.facility or self.host):
            raise ValueError("give at least one of application, facility or host")
        return self


class Hl7Settings(ListenerTlsSettings):
    """The HL7 v2 ADT listener (``pacsflow hl7-listener``): where it listens, what it accepts.

    ``sending_application`` / ``sending_facility`` are pacsflow's own MSH-3/MSH-4, used in the
    ACKs it returns and in the ORU messages it sends. ``enabled`` tells ``pacsflow serve``
    whether to run the listener (a site without an ADT feed turns it off).
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 2575
    sending_application: str = "PACSFLOW"
    sending_facility: str = "PACSFLOW"
    accepted_versions: list[str] = Field(default_factory=lambda: list(HL7_VERSIONS))
    # Character set assumed when MSH-18 is empty (HL7 table 0211 name).
    default_charset: str = "UNICODE UTF-8"
    max_message_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    idle_timeout_seconds: Annotated[float, Field(gt=0)] = 600.0
    max_connections: Annotated[int, Field(ge=1, le=1000)] = 32
    max_connections_per_source: Annotated[int, Field(ge=1, le=1000)] = 8
    # A connection that has not sent a whole first message by then is closed; idle_timeout
    # applies after the first message.
    first_frame_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 5.0
    # Who may send ADT (an A40 merge moves results between MRNs). Empty: any sender, with a
    # warning at start. A message from anyone else gets AR, is logged and is not applied.
    allowed_senders: list[Hl7SenderSettings] = Field(default_factory=list)

    @field_validator("accepted_versions")
    @classmethod
    def _known_versions(cls, values: list[str]) -> list[str]:
        unknown = sorted(set(values) - set(HL7_VERSIONS))
        if unknown:
            raise ValueError(f"unsupported HL7 versions {unknown}; known: {list(HL7_VERSIONS)}")
        return values

    @field_validator("default_charset")
    @classmethod
    def _known_charset(cls, value: str) -> str:
        from integrations.hl7.charset import python_codec

        if python_codec(value) is None:
            raise ValueError(f"{value!r} is not an HL7 table 0211 character set pacsflow knows")
        return value


class MrnSettings(Section):
    """How a DICOM Patient ID / Issuer of Patient ID matches an HL7 PID-3 identifier.

    Both sides are reduced to one key ``<authority>|<identifier>``: the authority through
    ``authority_map`` (DICOM issuer, HL7 namespace ID or universal ID -> one canonical name),
    the identifier by trimming, dropping ``strip_prefixes`` and, if set, leading zeros.
    """

    authority_map: dict[str, str] = Field(default_factory=dict)
    # Authority assumed when the DICOM Issuer of Patient ID (or CX-4 of PID-3) is empty.
    default_authority: str = ""
    # PID-3 repetitions whose CX-5 identifier type marks them as the MRN.
    identifier_types: list[str] = Field(default_factory=lambda: ["MR"])
    strip_leading_zeros: bool = True
    strip_prefixes: list[str] = Field(default_factory=list)
    case_sensitive: bool = False


class EmrSettings(ClientTlsSettings):
    """The EMR's HL7 MLLP receiver for ORU^R01 results, and how the outbox retries.

    ``enabled`` queues and sends ORU messages (and makes ``pacsflow serve`` run the sender).

    ``retry_delays_seconds`` is the backoff schedule after each failed attempt (the last
    value repeats); AE answers are retried at most ``ae_max_attempts`` times (0 = forever),
    AR answers fail the message at once.
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 2576
    receiving_application: str = "EMR"
    receiving_facility: str = "HOSPITAL"
    processing_id: str = "P"
    # The HL7 version of the ORU^R01 results and alerts the EMR receives.
    hl7_version: Literal["2.5", "2.5.1"] = "2.5.1"
    connect_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    ack_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    retry_delays_seconds: RetryDelays = Field(
        default_factory=lambda: [5.0, 15.0, 30.0, 60.0, 120.0, 300.0]
    )
    retry_jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    ae_max_attempts: Annotated[int, Field(ge=0)] = 20
    # Hold a result this long for its patient's ADT before sending it flagged "no clinical context".
    context_wait_seconds: Annotated[float, Field(ge=0)] = 0.0
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    # When the oldest message waiting for the EMR is older than this, the operators are told
    # once (``alert_team``, an [escalation] team; empty: a CRITICAL log line only), and again
    # only after the queue has caught up.
    alert_after_minutes: Annotated[float, Field(gt=0)] = 15.0
    alert_team: str = ""


class RisSettings(ClientTlsSettings):
    """The RIS's HL7 MLLP receiver for the worklist priority updates (ORM^O01 / OMI^O23).

    Its own destination: ``[worklist] route`` chooses the message, this section where it goes
    (never the EMR's endpoint). Retries as for ``[emr]``: the last delay repeats, AE answers
    are retried at most ``ae_max_attempts`` times (0 = forever), AR fails the message.
    """

    host: str = "127.0.0.1"
    port: Port = 2577
    # The HL7 version of the ORM^O01 / OMI^O23 priority updates the RIS receives.
    hl7_version: Literal["2.5", "2.5.1"] = "2.5"
    connect_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    ack_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    retry_delays_seconds: RetryDelays = Field(
        default_factory=lambda: [5.0, 15.0, 30.0, 60.0, 120.0, 300.0]
    )
    retry_jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    ae_max_attempts: Annotated[int, Field(ge=0)] = 20
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0


class FhirSettings(Section):
    """The FHIR R4 server DiagnosticReports are posted to, and how pacsflow authenticates.

    Secrets never come from this file: ``bearer_env`` and ``private_key_env`` name the
    environment variables that hold the bearer token, or the SMART backend-services private
    key (PEM text or a path to a PEM file).
    """

    enabled: bool = False
    base_url: str = ""
    auth: Literal["none", "bearer", "smart-backend"] = "none"
    bearer_env: str = "PACSFLOW_FHIR_TOKEN"
    client_id: str = ""
    # The authorization server's token endpoint; empty: discovered from
    # <base_url>/.well-known/smart-configuration.
    auth_url: str = ""
    scope: str = "system/DiagnosticReport.write system/Observation.write system/Device.write"
    private_key_env: str = "PACSFLOW_FHIR_PRIVATE_KEY"
    key_id: str = ""
    signing_algorithm: Literal["RS384", "ES384"] = "RS384"
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    verify_tls: bool = True
    retry_delays_seconds: RetryDelays = Field(
        default_factory=lambda: [5.0, 15.0, 30.0, 60.0, 120.0, 300.0]
    )
    retry_jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    # Canonical MRN authority -> FHIR Identifier.system URI of that MRN.
    identifier_systems: dict[str, str] = Field(default_factory=dict)
    # Identifier.system of the order a report is basedOn (placer order number, else accession).
    placer_order_system: str = "urn:pacsflow:placer-order-number"
    accession_system: str = "urn:pacsflow:accession-number"
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0

    @model_validator(mode="after")
    def _usable(self) -> FhirSettings:
        if self.enabled and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL when fhir.enabled is true")
        if self.auth == "smart-backend" and self.enabled and not self.client_id:
            raise ValueError("client_id is required for auth = 'smart-backend'")
        return self


class ConsoleSettings(Section):
    """The web console (``pacsflow console``): worklist, studies, analytics, system, audit.

    ``session_secret_env`` names the environment variable holding the key that signs session
    cookies and acknowledgement links (at least 32 characters); the escalation service reads
    the same variable to accept a console login. Cookies are Secure except, with
    ``cookie_secure = "auto"``, over plain http to a loopback address.
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 8480
    # How people reach the console (links from the escalation service's acknowledge pages).
    base_url: HttpUrl = "http://127.0.0.1:8480"
    session_secret_env: str = "PACSFLOW_CONSOLE_SECRET"
    idle_timeout_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 15.0
    # A session ends after this long whatever the activity (the roles are re-read at login).
    max_session_hours: Annotated[float, Field(gt=0, le=7 * 24)] = 12.0
    # auto: Secure on every cookie except over plain http to a loopback address (a browser on
    # the console's own machine, a test); true / false force it.
    cookie_secure: Literal["auto"] | bool = "auto"
    same_site: Literal["lax", "strict"] = "lax"
    # An acknowledge link on a console page or from a notification is valid this long.
    ack_link_minutes: Annotated[float, Field(gt=0, le=7 * 24 * 60)] = 60.0
    # The Prefect UI, for the run link on a study page ('' = from PREFECT_API_URL).
    prefect_ui_url: str = ""


class LdapSettings(Section):
    """The directory people log in with: bind as the user, then read their groups.

    Either ``user_dn_template`` (``uid={username},ou=people,...``), or ``user_search_base``
    with ``user_filter`` (``(uid={username})``; searched with ``bind_dn`` /
    ``bind_credentials_env`` or anonymously). Groups: ``groupOfNames`` under
    ``group_search_base`` whose ``member`` is the user's DN, and the user's ``memberOf``.
    """

    url: str = ""
    start_tls: bool = False
    user_dn_template: str = ""
    user_search_base: str = ""
    user_filter: str = "(uid={username})"
    bind_dn: str = ""
    bind_credentials_env: str = "PACSFLOW_LDAP_BIND_CREDENTIALS"
    group_search_base: str = ""
    group_filter: str = "(&(objectClass=groupOfNames)(member={user_dn}))"
    display_name_attribute: str = "cn"
    # A CA file for ldaps:// and StartTLS ('' = the system's).
    ca_file: str = ""
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    group_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0

    @field_validator("url")
    @classmethod
    def _ldap_url(cls, value: str) -> str:
        if value and not re.match(r"^ldaps?://[^\s/]+", value):
            raise ValueError("must be an ldap:// or ldaps:// URL")
        return value

    @model_validator(mode="after")
    def _how_to_find_users(self) -> LdapSettings:
        if self.user_dn_template and "{username}" not in self.user_dn_template:
            raise ValueError("user_dn_template must contain {username}")
        if self.user_search_base and "{username}" not in self.user_filter:
            raise ValueError("user_filter must contain {username}")
        return self


RbacRole = Literal[
    "radiologist", "emergency_physician", "technologist", "department_head", "it_admin"
]


class RbacSettings(Section):
    """Roles from directory groups: each key is a list of group DNs. No per-user grants."""

    radiologist: list[str] = Field(default_factory=list)
    emergency_physician: list[str] = Field(default_factory=list)
    technologist: list[str] = Field(default_factory=list)
    department_head: list[str] = Field(default_factory=list)
    it_admin: list[str] = Field(default_factory=list)


class SamlSettings(Section):
    """SAML 2.0 single sign-on (the console as service provider; pysaml2 and ``xmlsec1``).

    The IdP's signing certificate comes from ``idp_metadata_file``; only signed assertions are
    accepted. ``group_attribute`` carries group names or DNs, mapped to roles by ``[rbac]``.
    """

    enabled: bool = False
    sp_entity_id: str = ""
    acs_url: str = ""  # the console's /saml/acs as the IdP reaches it
    idp_metadata_file: str = ""
    sp_key_file: str = ""  # signs AuthnRequests when set
    sp_cert_file: str = ""
    group_attribute: str = "groups"
    username_attribute: str = "uid"  # '' or missing in the assertion: the NameID
    display_name_attribute: str = "displayName"
    allow_idp_initiated: bool = False
    xmlsec_binary: str = "/usr/bin/xmlsec1"


class AuditSettings(Section):
    """The ATNA audit trail: DICOM PS3.15 A.5 audit messages, kept in PostgreSQL (append-only)
    and sent as RFC 5424 syslog to the site's audit record repository by ``pacsflow
    audit-sender``.

    ``enabled`` records every audited event; when ``syslog_host`` is set, ``pacsflow serve``
    also runs the sender, and records queue in PostgreSQL while the collector is down (a
    collector configured later receives the backlog).
    ``syslog_transport``: ``tcp`` (RFC 6587 octet counting), ``tls`` (RFC 5425) or ``udp``
    (RFC 5426; a datagram the collector missed is lost, so prefer tcp or tls). For ``tls``,
    ``tls_ca_file`` verifies the collector (empty: the system CAs) and ``tls_cert_file`` /
    ``tls_key_file`` are pacsflow's client certificate when the collector asks for one (ATNA
    mutual authentication). ``audit_source_id`` is the AuditSourceID of every message (empty:
    the host name); ``audit_enterprise_site_id`` the AuditEnterpriseSiteID (optional).
    """

    enabled: bool = True
    syslog_host: str = ""
    syslog_port: Port = 6514
    syslog_transport: Literal["tcp", "tls", "udp"] = "tls"
    audit_source_id: str = ""
    audit_enterprise_site_id: str = ""
    # IHE ITI TF-2 3.20 (ATNA) says IHE+RFC-3881; DICOM PS3.15 A.6 says DICOM+RFC3881.
    msgid: Literal["IHE+RFC-3881", "DICOM+RFC3881"] = "IHE+RFC-3881"
    app_name: Annotated[str, Field(min_length=1, max_length=48, pattern=r"^[!-~]+$")] = "pacsflow"
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_server_name: str = ""  # checked against the collector's certificate (empty: syslog_host)
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0
    retry_delays_seconds: RetryDelays = Field(default_factory=lambda: [1.0, 5.0, 15.0, 60.0])
    retry_jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0

    @model_validator(mode="after")
    def _tls_pair(self) -> AuditSettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self


class MonitoringSettings(Section):
    """The daily monitoring report (``pacsflow monitor``, deployment ``monitoring-daily``).

    Thresholds raise one operational alert to ``alert_team`` (an [escalation] team; empty:
    ``[results] alert_team``, and with neither the CRITICAL log line is the alert). The
    escalation rate per modality is compared with the acceptance record's
    (``acceptance_record``: the acceptance suite's ``acceptance.json``; empty: no baseline)
    and with ``historical_flag_rates`` (modality -> the fraction of studies radiologists
    flagged Critical before go-live): a relative divergence over ``divergence_alert`` on the
    report's day alerts, one over ``sustained_divergence`` on each of the last
    ``sustained_days`` days (each with at least ``min_studies_per_day``) alerts at level 2.
    """

    output_dir: str = ""  # empty: <storage_dir>/monitoring
    alert_team: str = ""
    acceptance_record: str = ""
    historical_flag_rates: dict[str, Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=dict
    )
    divergence_alert: Annotated[float, Field(gt=0)] = 0.25
    sustained_divergence: Annotated[float, Field(gt=0)] = 0.30
    sustained_days: Annotated[int, Field(ge=2, le=90)] = 7
    min_studies_per_day: Annotated[int, Field(ge=1)] = 20
    # A study still queued or processing after this long, or receiving this long past the
    # close ceiling, is stuck.
    stuck_minutes: Annotated[float, Field(gt=0)] = 60.0
    # A live SR built this long ago must be in the PACS (C-FIND), and an ORU acknowledged.
    orphan_grace_minutes: Annotated[float, Field(ge=0)] = 30.0
    max_orphan_checks: Annotated[int, Field(ge=0)] = 2000
    # Alert thresholds: failed studies, stuck studies, orphans (at least this many), the age
    # of the oldest undelivered message of any outbox, interface drops in the period.
    failed_studies_alert: Annotated[int, Field(ge=1)] = 1
    stuck_studies_alert: Annotated[int, Field(ge=1)] = 1
    orphans_alert: Annotated[int, Field(ge=1)] = 1
    outbox_age_alert_minutes: Annotated[float, Field(gt=0)] = 60.0
    interface_drops_alert: Annotated[int, Field(ge=1)] = 50

    @field_validator("historical_flag_rates")
    @classmethod
    def _upper_modalities(cls, rates: dict[str, float]) -> dict[str, float]:
        return {modality.upper(): rate for modality, rate in rates.items()}


class AcceptanceAccount(Section):
    """A directory account the acceptance suite logs in to the console with, for one role."""

    username: Annotated[str, Field(min_length=1)]
    password_env: Annotated[str, Field(min_length=1)]  # the variable holding its password


class AcceptanceSettings(Section):
    """The go-live acceptance suite (``pacsflow acceptance run``, deployment
    ``acceptance-suite``): where the PACS is driven from, the limits each step is held to, the
    console accounts the role step logs in with, and the Ed25519 key that signs the record.

    With ``[pacs] rest_url`` (Orthanc's REST API) the PACS sends each study to the node as
    ``[pacs] node_modality_id``; without it, the suite asks the PACS for a C-MOVE to the node's
    AE title.
    """

    signing_key_file: str = ""  # PEM, PKCS#8 Ed25519 private key
    # Who the suite is when it stores the studies to the PACS and asks it to move them (a
    # modality's AE title, registered at the PACS for C-MOVE). Never the node's own: the node
    # takes what arrives by a move it originated for a prior, and does not analyse it.
    calling_ae_title: AETitle = "PACSFLOW-ACCEPT"
    arrival_seconds: Annotated[float, Field(gt=0)] = 30.0
    analysis_latency_seconds: Annotated[float, Field(gt=0)] = 600.0
    escalation_seconds: Annotated[float, Field(gt=0)] = 60.0
    # The SR and overlays in the PACS, the tier in the worklist (and acknowledged by the RIS)
    # this long after study close at the node (the analysis latency and a minute to deliver).
    results_seconds: Annotated[float, Field(gt=0)] = 660.0
    # How long the suite waits for a study's last step before it fails what is missing.
    study_timeout_seconds: Annotated[float, Field(gt=0)] = 900.0
    # An overlay lies on the ground-truth region when its hot spot is inside the region's box
    # grown by this fraction of the image size, on the same image or one whose plane is at
    # most through_plane_mm away.
    region_margin: Annotated[float, Field(ge=0, le=0.5)] = 0.05
    through_plane_mm: Annotated[float, Field(ge=0)] = 10.0
    role_accounts: dict[RbacRole, AcceptanceAccount] = Field(default_factory=dict)
    chromium: str = "/usr/bin/chromium"  # renders acceptance.pdf from acceptance.html


class Settings(BaseSettings):
    """All of pacsflow's configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
    )

    node: NodeSettings = Field(default_factory=NodeSettings)
    pacs: PacsSettings = Field(default_factory=PacsSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    study: StudySettings = Field(default_factory=StudySettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)
    results: ResultsSettings = Field(default_factory=ResultsSettings)
    priors: PriorsSettings = Field(default_factory=PriorsSettings)
    urgency: UrgencySettings = Field(default_factory=UrgencySettings)
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    worklist: WorklistSettings = Field(default_factory=WorklistSettings)
    hl7: Hl7Settings = Field(default_factory=Hl7Settings)
    mrn: MrnSettings = Field(default_factory=MrnSettings)
    emr: EmrSettings = Field(default_factory=EmrSettings)
    ris: RisSettings = Field(default_factory=RisSettings)
    fhir: FhirSettings = Field(default_factory=FhirSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    ldap: LdapSettings = Field(default_factory=LdapSettings)
    rbac: RbacSettings = Field(default_factory=RbacSettings)
    saml: SamlSettings = Field(default_factory=SamlSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    acceptance: AcceptanceSettings = Field(default_factory=AcceptanceSettings)

    # Set by load_settings: the file the settings came from (None when none was read).
    config_path: Path | None = None

    _toml_file: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)

    @model_validator(mode="after")
    def _alert_team_exists(self) -> Settings:
        for section, team in (
            ("results", self.results.alert_team),
            ("monitoring", self.monitoring.alert_team),
            ("emr", self.emr.alert_team),
        ):
            if team and team not in self.escalation.teams:
                raise ValueError(
                    f"[{section}] alert_team {team!r} is not one of the [escalation] teams"
                    f" ({', '.join(sorted(self.escalation.teams)) or 'none defined'})"
                )
        return self

    @model_validator(mode="after")
    def _acceptance_is_not_the_node(self) -> Settings:
        if self.acceptance.calling_ae_title == self.node.ae_title:
            raise ValueError(
                "[acceptance] calling_ae_title must differ from [node] ae_title: the node takes"
                " studies moved at its own request for priors and would not analyse them"
            )
        return self

    def analyzer_names(self) -> list[str]:
        """Every analyzer some routing rule refers to, in first-mention order."""
        names: list[str] = []
        for rule in self.routing.rules:
            names.extend(name for name in rule.analyzers if name not in names)
        return names


def settings_environment(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce ``settings`` exactly in a child process.

    ``pacsflow serve`` passes them to the processes it starts, so a child sees the same
    configuration as its parent whether it came from a file, the environment or overrides.
    """
    env: dict[str, str] = {}
    for section, values in settings.model_dump(mode="json", exclude={"config_path"}).items():
        if not isinstance(values, dict):
            continue
        fields = type(getattr(settings, section)).model_fields
        for key, value in values.items():
            if value is None and fields[key].default is None:
                continue  # unset is the default; "null" is no value for an int | None
            name = f"PACSFLOW_{section.upper()}__{key.upper()}"
            env[name] = value if isinstance(value, str) else json.dumps(value)
    env[CONFIG_ENV_VAR] = str(settings.config_path) if settings.config_path else ""
    return env


def resolve_config_path(config: str | os.PathLike[str] | None) -> Path | None:
    """The TOML file to read: explicit argument, then PACSFLOW_CONFIG, then ./pacsflow.toml."""
    if config:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist")
        return path
    from_env = os.environ.get(CONFIG_ENV_VAR)
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV_VAR}={from_env}: file does not exist")
        return path
    default = Path.cwd() / DEFAULT_CONFIG_NAME
    return default if default.is_file() else None


def load_settings(
    config: str | os.PathLike[str] | None = None, *, search: bool = True, **overrides: Any
) -> Settings:
    """Read and validate the settings, or raise :class:`ConfigError` naming the bad key.

    With ``search=False`` and no ``config``, no file is read (environment and overrides only).
    """
    path = resolve_config_path(config) if (config or search) else None

    class LoadedSettings(Settings):
        _toml_file: ClassVar[Path | None] = path

    check_environment_names(os.environ)
    try:
        settings: Settings = LoadedSettings(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error, path)) from None
    except (OSError, ValueError) as error:  # unreadable or syntactically broken TOML
        raise ConfigError(f"cannot read configuration {path}: {error}") from None
    check_secret_names(os.environ, settings)
    base = path.parent.resolve() if path else Path.cwd()
    return _with_absolute_paths(settings, base, path)


def _with_absolute_paths(settings: Settings, base: Path, path: Path | None) -> Settings:
    def absolute(value: Path) -> Path:
        return value if value.is_absolute() else (base / value).resolve()

    node = settings.node.model_copy(update={"storage_dir": absolute(settings.node.storage_dir)})
    models = settings.models.model_copy(update={"dir": absolute(settings.models.dir)})
    monitoring = settings.monitoring.model_copy(
        update={
            key: str(absolute(Path(value))) if value else ""
            for key, value in (
                ("output_dir", settings.monitoring.output_dir),
                ("acceptance_record", settings.monitoring.acceptance_record),
            )
        }
    )
    return settings.model_copy(
        update={
            "node": node,
            "models": models,
            "monitoring": monitoring,
            "config_path": path.resolve() if path else None,
        }
    )


def _describe(error: ValidationError, path: Path | None) -> str:
    where = f"in {path} or the environment" if path else "in the environment"
    lines = [f"invalid configuration ({where}):"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        env_name = ENV_PREFIX + ENV_NESTED_DELIMITER.join(
            str(part).upper() for part in item["loc"] if not isinstance(part, int)
        )
        value = item.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            what = "section" if len(item["loc"]) == 1 else "key"
            hint = _moved(item["loc"]) or _suggestion(item["loc"])
            message = f"unknown {what}{hint}"
        lines.append(f"  {key}: {message}{shown} [env {env_name}]")
    return "\n".join(lines)


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, int]:
    """The settings model a field holds, and how many list/table levels wrap it."""
    from typing import Union, get_args, get_origin

    origin = get_origin(annotation)
    if origin is Annotated:
        return _model_of(get_args(annotation)[0])
    if origin is list or origin is dict:
        model, depth = _model_of(get_args(annotation)[-1])
        return model, depth + 1
    if origin is Union or (origin is not None and type(annotation).__name__ == "UnionType"):
        for member in get_args(annotation):
            model, depth = _model_of(member)
            if model is not None:
                return model, depth
        return None, 0
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, 0
    return None, 0


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys the settings model at ``loc`` (a path of sections, keys, indexes) accepts."""
    model: type[BaseModel] | None = Settings
    position = 0
    while model is not None and position < len(loc):
        field = model.model_fields.get(str(loc[position]))
        if field is None:
            return []
        model, wrappers = _model_of(field.annotation)
        position += 1 + wrappers
    if model is None or position != len(loc):
        return []
    return [name for name in model.model_fields if name != "config_path"]


# Keys that moved to another section: (old section, old key) -> (new section, new key).
MOVED_KEYS = {
    ("acceptance", "pacs_rest_url"): ("pacs", "rest_url"),
    ("acceptance", "pacs_node_alias"): ("pacs", "node_modality_id"),
}


def _moved(loc: tuple[Any, ...]) -> str:
    """``; moved to [pacs] rest_url`` for a key that lives elsewhere now, else empty."""
    moved = MOVED_KEYS.get((str(loc[0]).lower(), str(loc[-1]).lower())) if len(loc) == 2 else None
    return f"; moved to [{moved[0]}] {moved[1]}" if moved else ""


def _suggestion(loc: tuple[Any, ...]) -> str:
    """``; did you mean 'x'?`` for the key nearest to ``loc``'s last part, or a list of keys."""
    known = _keys_at(tuple(loc[:-1]))
    close = difflib.get_close_matches(str(loc[-1]).lower(), known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}?"
    return f"; known keys: {', '.join(known)}" if known else ""


def check_environment_names(environ: Mapping[str, str]) -> None:
    """Refuse ``PACSFLOW_<SECTION>__<KEY>`` variables naming no section or key.

    pydantic-settings ignores a variable for a section that does not exist
    (``PACSFLOW_CONSOLE__PORT``), so this check runs before it. Nested tables
    (``PACSFLOW_ESCALATION__TEAMS__...``) are checked as far as the settings models go.
    """
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or ENV_NESTED_DELIMITER not in upper:
            continue
        parts = upper[len(ENV_PREFIX) :].lower().split(ENV_NESTED_DELIMITER)
        for depth in range(len(parts)):
            known = _keys_at(tuple(parts[:depth]))
            if not known:
                break  # a table of free keys (people, teams, maps) or a plain value
            if parts[depth] not in known:
                close = difflib.get_close_matches(parts[depth], known, n=1, cutoff=0.6)
                moved = MOVED_KEYS.get((parts[0], parts[1])) if depth == 1 else None
                if moved:
                    nearest = ENV_NESTED_DELIMITER.join(moved).upper()
                    hint = f"; moved to [{moved[0]}] {moved[1]} ({ENV_PREFIX}{nearest})"
                elif close:
                    corrected = [*parts[:depth], close[0], *parts[depth + 1 :]]
                    nearest = ENV_NESTED_DELIMITER.join(corrected).upper()
                    hint = f"; did you mean {ENV_PREFIX}{nearest}?"
                else:
                    hint = f"; known: {', '.join(known)}"
                what = "section" if depth == 0 else "key"
                where = ".".join(parts[: depth + 1])
                problems.append(f"  {name}: unknown {what} {where!r}{hint}")
                break
    if problems:
        raise ConfigError("invalid configuration (in the environment):\n" + "\n".join(problems))


def _secret_variable_names(value: Any) -> set[str]:
    """Every value of a ``*_env`` setting: the variables that hold secrets."""
    names: set[str] = set()
    if isinstance(value, BaseModel):
        for field_name in type(value).model_fields:
            item = getattr(value, field_name)
            if field_name.endswith("_env") and isinstance(item, str) and item:
                names.add(item.upper())
            else:
                names |= _secret_variable_names(item)
    elif isinstance(value, dict):
        for item in value.values():
            names |= _secret_variable_names(item)
    elif isinstance(value, list | tuple):
        for item in value:
            names |= _secret_variable_names(item)
    return names


def check_secret_names(environ: Mapping[str, str], settings: Settings) -> None:
    """Refuse single-underscore ``PACSFLOW_*`` variables no ``*_env`` setting names.

    ``PACSFLOW_NODE_PORT`` is a typo of ``PACSFLOW_NODE__PORT``, not a secret.
    """
    # PACSFLOW_<SECTION> holds a whole section as JSON; pydantic validates its keys.
    sections = {f"{ENV_PREFIX}{section}".upper() for section in Settings.model_fields}
    # The documented default names stay valid when a site renames its secret variable.
    defaults = [
        field.default_factory()  # type: ignore[call-arg]
        for field in Settings.model_fields.values()
        if field.default_factory is not None
    ]
    secrets = _secret_variable_names(settings) | _secret_variable_names(defaults)
    allowed = OTHER_ENVIRONMENT_VARIABLES | sections | secrets
    settings_names = {
        f"{ENV_PREFIX}{section}{ENV_NESTED_DELIMITER}{key}".upper()
        for section in Settings.model_fields
        for key in _keys_at((section,))
    }
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or ENV_NESTED_DELIMITER in upper or upper in allowed:
            continue
        close = difflib.get_close_matches(upper, sorted(settings_names | allowed), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        problems.append(f"  {name}: not a pacsflow setting nor a secret a *_env key names{hint}")
    if problems:
        raise ConfigError("invalid configuration (in the environment):\n" + "\n".join(problems))
