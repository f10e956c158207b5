"""The model package format: a manifest that says what a weights file is and how to use it (pure).

A model package is a folder (or a ``.zip`` archive of one) holding ``manifest.json`` and a
weights file. The manifest names the model and its version, the analyzer that runs it, what it
is for (modality, body part, view), how to feed it (input size, channels, windowing), the
labels it reports (each with a code, an operating threshold and an urgency tier), the intended
use, whether it is cleared for clinical use, and the SHA-256 of the weights. Loading the
weights (I/O) lives in :mod:`models.loading`; this module only parses and checks manifests.

Example (abridged)::

    {
      "format": "pacsflow-model-package/1",
      "name": "chest-xray", "version": "1.0.0", "manufacturer": "pacsflow",
      "analyzer": "chest-xray",
      "intended_use": "...", "clinical_use": false,
      "modalities": ["CR", "DX"], "body_parts": ["CHEST"], "views": ["PA", "AP"],
      "architecture": {"family": "densenet", "growth_rate": 32, "block_config": [6, 12, 24, 16],
                       "num_init_features": 64, "in_channels": 1, "num_outputs": 18},
      "input": {"size": [224, 224], "channels": ["image"], "windowing": "dicom",
                "value_range": [-1024, 1024], "crop": "center_square"},
      "labels": [{"name": "Pneumothorax", "output_index": 3, "threshold": 0.5, "tier": "Urgent",
                  "code": {"value": "36118008", "scheme": "SCT", "meaning": "Pneumothorax"}}],
      "weights": {"file": "weights.pt", "sha256": "<64 hex digits>"},
      "domain": {"file": "domain.pt", "sha256": "<64 hex digits>", "score": "mahalanobis-pooled",
                 "unit": "image", "limit": 41.7, "intensity": {"mean": [-0.6, 0.1], ...},
                 "calibration": {"in_domain_false_rejection": 0.0, "ood_detection": 1.0, ...}}
    }

``sequences`` (MR packages, optional) names the MR sequences the network was trained on, in
the order its analyzer should prefer them (``"FLAIR"``, ``"T2"``, ``"T1 post-contrast"``,
``"T1"``, ``"unidentified"``: :class:`models.analyzers.mr_sequence.MrSequence`); a series of
any other sequence is not analysable for that package. Empty (the default, and what packages
written before the field existed say): the analyzer's own order, every identified sequence.

``domain`` is the input domain the network was fitted on (see :mod:`models.domain`): beside
modalities, body parts and views, a Gaussian over its penultimate-layer features (mean and
shrinkage precision in ``domain.pt``, hashed like the weights), the range of the preprocessed
input's intensity statistics, and the score limit with its calibration. A package with
``clinical_use: true`` must declare it; a non-clinical one without it loads, flagged.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from integrations.errors import PackageError
from models.results import CodedConcept, ModelIdentity, UrgencyTier

FORMAT: Literal["pacsflow-model-package/1"] = "pacsflow-model-package/1"
MANIFEST_NAME = "manifest.json"
DEMO_NOTICE = "demo weights trained on generated images; not for clinical use"

_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeSpec(_Strict):
    """A coded concept: ``{"value": "36118008", "scheme": "SCT", "meaning": "Pneumothorax"}``."""

    value: Annotated[str, Field(min_length=1, max_length=64)]
    scheme: Annotated[str, Field(min_length=1, max_length=16)]
    meaning: Annotated[str, Field(min_length=1, max_length=64)]

    def concept(self) -> CodedConcept:
        return CodedConcept(self.value, self.scheme, self.meaning)

    @classmethod
    def of(cls, concept: CodedConcept) -> CodeSpec:
        return cls(value=concept.value, scheme=concept.scheme, meaning=concept.meaning)


class Derivation(_Strict):
    """A label computed from other labels instead of read from a network output.

    ``at_least_two``: present when two or more of ``labels`` are; its probability is the
    second highest of theirs (a mixed hemorrhage needs two types).
    """

    rule: Literal["at_least_two"]
    labels: Annotated[list[str], Field(min_length=2)]


class LabelSpec(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    code: CodeSpec
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)]
    tier: UrgencyTier
    output_index: Annotated[int, Field(ge=0)] | None = None
    derived: Derivation | None = None

    @model_validator(mode="after")
    def _one_source(self) -> LabelSpec:
        if (self.output_index is None) == (self.derived is None):
            raise ValueError(f"label {self.name!r} needs exactly one of output_index or derived")
        return self


class ArchitectureSpec(_Strict):
    """The network: a DenseNet-BC in torchvision's (and torchxrayvision's) module layout, or a
    torchvision ResNet (``depth`` 18, 34 or 50; a 2.5D volume network takes its context slices
    as input channels). ``gradcam_layer`` defaults to the last feature block of the family."""

    family: Literal["densenet", "resnet"] = "densenet"
    growth_rate: Annotated[int, Field(ge=1, le=128)] | None = None
    block_config: (
        Annotated[list[Annotated[int, Field(ge=1, le=64)]], Field(min_length=1)] | None
    ) = None
    num_init_features: Annotated[int, Field(ge=1, le=256)] | None = None
    bn_size: Annotated[int, Field(ge=1, le=8)] = 4
    depth: Literal[18, 34, 50] | None = None
    in_channels: Annotated[int, Field(ge=1, le=64)]
    num_outputs: Annotated[int, Field(ge=1, le=1024)]
    gradcam_layer: str = ""

    @model_validator(mode="after")
    def _family_fields(self) -> ArchitectureSpec:
        if self.family == "densenet":
            if None in (self.growth_rate, self.block_config, self.num_init_features):
                raise ValueError("a densenet needs growth_rate, block_config, num_init_features")
            if not self.gradcam_layer:
                object.__setattr__(self, "gradcam_layer", "features.norm5")
        else:
            if self.depth is None:
                raise ValueError("a resnet needs depth (18, 34 or 50)")
            if not self.gradcam_layer:
                object.__setattr__(self, "gradcam_layer", "layer4")
        return self

    @property
    def feature_count(self) -> int:
        """Width of the penultimate layer (what the classifier reads)."""
        if self.family == "resnet":
            return 2048 if self.depth == 50 else 512
        assert self.growth_rate and self.block_config and self.num_init_features
        features = self.num_init_features
        for index, layers in enumerate(self.block_config):
            features += layers * self.growth_rate
            if index != len(self.block_config) - 1:
                features //= 2
        return features


class WindowSpec(_Strict):
    """A window in modality units (Hounsfield units for CT), applied as PS3.3 C.11.2.1.2 says
    for ``function`` (LINEAR_EXACT: exactly ``center +/- width / 2`` maps onto [0, 1])."""

    name: str
    center: float
    width: Annotated[float, Field(gt=0)]
    function: Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"] = "LINEAR_EXACT"

    @model_validator(mode="after")
    def _linear_width(self) -> WindowSpec:
        if self.function == "LINEAR" and self.width < 1:
            raise ValueError("a LINEAR window needs a width of at least 1")
        return self


class InputSpec(_Strict):
    """How images become the network's input tensor.

    ``windowing``: ``dicom`` uses the image's own VOI LUT or window (radiographs);
    ``fixed`` applies ``windows`` in modality units, one channel each (CT);
    ``percentile`` scales each series between two intensity percentiles;
    ``tissue_median`` divides a series by 2.5 times the median of its tissue voxels (those
    above a tenth of the 99.5th percentile), which puts soft tissue near 0.4 whatever the
    scanner's scaling and however many air slices the series has (MR).
    ``context_slices``: slices on each side fed as extra channels (2.5D); 0 for 2D.
    ``value_range``: the [0, 1] display range is mapped linearly onto this interval.
    """

    size: tuple[Annotated[int, Field(ge=16, le=2048)], Annotated[int, Field(ge=16, le=2048)]]
    channels: Annotated[list[str], Field(min_length=1)]
    windowing: Literal["dicom", "fixed", "percentile", "tissue_median"]
    windows: list[WindowSpec] = []
    percentiles: tuple[float, float] = (0.5, 99.5)
    context_slices: Annotated[int, Field(ge=0, le=8)] = 0
    value_range: tuple[float, float] = (0.0, 1.0)
    crop: Literal["none", "center_square"] = "none"
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 16

    @model_validator(mode="after")
    def _windows_match(self) -> InputSpec:
        if self.windowing == "fixed" and not self.windows:
            raise ValueError("windowing 'fixed' needs at least one entry in windows")
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0:
            raise ValueError("percentiles must satisfy 0 <= low < high <= 100")
        if self.value_range[0] >= self.value_range[1]:
            raise ValueError("value_range must be increasing")
        return self

    @property
    def channels_per_slice(self) -> int:
        return len(self.windows) if self.windowing == "fixed" else 1

    @property
    def total_channels(self) -> int:
        return self.channels_per_slice * (2 * self.context_slices + 1)


def _sha256_hex(value: str) -> str:
    value = value.lower()
    if not _SHA256_PATTERN.fullmatch(value):
        raise ValueError("must be 64 hexadecimal digits")
    return value


def _plain_file_name(value: str) -> str:
    if "/" in value or "\\" in value or value in {".", ".."}:
        raise ValueError("must be a plain file name inside the package")
    return value


class WeightsSpec(_Strict):
    file: Annotated[str, Field(min_length=1, max_length=128)] = "weights.pt"
    sha256: str

    _hex = field_validator("sha256")(lambda value: _sha256_hex(value))
    _plain_name = field_validator("file")(lambda value: _plain_file_name(value))


class IntensityRange(_Strict):
    """Accepted range of each intensity statistic of one preprocessed input (see
    :func:`models.domain.intensity_statistics`): a statistic outside it is out of domain."""

    mean: tuple[float, float]
    std: tuple[float, float]
    low_fraction: tuple[float, float]
    high_fraction: tuple[float, float]


class DomainSpec(_Strict):
    """The out-of-distribution gate: feature Gaussian, its score limit, intensity ranges.

    ``unit``: what one score is for: ``image`` (each network input is one image) or
    ``series`` (the median over a series' slice scores). ``calibration`` holds what the
    limit was chosen on (held-out in-domain and generated out-of-domain sets) and how it did.
    """

    file: Annotated[str, Field(min_length=1, max_length=128)] = "domain.pt"
    sha256: str
    score: Literal["mahalanobis-pooled"] = "mahalanobis-pooled"
    unit: Literal["image", "series"]
    limit: Annotated[float, Field(gt=0)]
    intensity: IntensityRange
    calibration: dict[str, Any] = {}

    _hex = field_validator("sha256")(lambda value: _sha256_hex(value))
    _plain_name = field_validator("file")(lambda value: _plain_file_name(value))


class Manifest(_Strict):
    format: Literal["pacsflow-model-package/1"] = FORMAT
    name: str
    version: Annotated[str, Field(min_length=1, max_length=64)]
    manufacturer: Annotated[str, Field(min_length=1, max_length=64)] = "pacsflow"
    analyzer: str
    description: str = ""
    intended_use: Annotated[str, Field(min_length=1)]
    clinical_use: bool
    notice: str = ""
    modalities: Annotated[list[str], Field(min_length=1)]
    body_parts: list[str] = []
    views: list[str] = []
    sequences: list[str] = []  # MR sequences trained on, preferred first; empty: any
    architecture: ArchitectureSpec
    input: InputSpec
    labels: Annotated[list[LabelSpec], Field(min_length=1)]
    weights: WeightsSpec
    domain: DomainSpec | None = None
    training: dict[str, Any] = {}

    @field_validator("name", "analyzer")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _NAME_PATTERN.fullmatch(value):
            raise ValueError("must be lower-case letters, digits, '.', '_' or '-' (max 64)")
        return value

    @field_validator("sequences")
    @classmethod
    def _known_sequences(cls, value: list[str]) -> list[str]:
        # imported here: models.analyzers imports this module while it loads
        from models.analyzers.mr_sequence import READABLE_SEQUENCES

        known = [sequence.value for sequence in READABLE_SEQUENCES]
        unknown = [name for name in value if name not in known]
        if unknown:
            raise ValueError(f"unknown MR sequences {unknown}; known: {', '.join(known)}")
        if len(set(value)) != len(value):
            raise ValueError("a sequence is named twice")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        names = [label.name for label in self.labels]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"labels repeated: {', '.join(repeated)}")
        indices = [label.output_index for label in self.labels if label.output_index is not None]
        if len(set(indices)) != len(indices):
            raise ValueError("two labels read the same output_index")
        outputs = self.architecture.num_outputs
        beyond = [
            f"{label.name}={label.output_index}"
            for label in self.labels
            if (label.output_index or 0) >= outputs
        ]
        if beyond:
            raise ValueError(
                f"output_index beyond the network's {outputs} outputs: {', '.join(beyond)}"
            )
        for label in self.labels:
            if label.derived is not None:
                unknown = [n for n in label.derived.labels if n not in names]
                if unknown:
                    raise ValueError(
                        f"label {label.name!r} is derived from unknown labels {unknown}"
                    )
        if self.input.total_channels != self.architecture.in_channels:
            raise ValueError(
                f"input gives {self.input.total_channels} channels but the network takes "
                f"{self.architecture.in_channels}"
            )
        if self.is_demo and self.clinical_use:
            raise ValueError("a demo package (training.source 'generated') cannot be clinical_use")
        if self.clinical_use and self.domain is None:
            raise ValueError(
                "a clinical package must declare its input domain (domain: feature statistics "
                "and score limit; fit them with `pacsflow models fit-domain`)"
            )
        if self.domain is not None and self.domain.file == self.weights.file:
            raise ValueError("domain.file must differ from weights.file")
        return self

    @property
    def is_demo(self) -> bool:
        return self.training.get("source") == "generated"

    def label(self, name: str) -> LabelSpec:
        for label in self.labels:
            if label.name == name:
                return label
        raise KeyError(name)

    def identity(self) -> ModelIdentity:
        return ModelIdentity(
            name=self.name,
            version=self.version,
            manufacturer=self.manufacturer,
            weights_sha256=self.weights.sha256,
            clinical_use=self.clinical_use,
            intended_use=self.intended_use,
        )


def parse_manifest(data: object, source: str) -> Manifest:
    """Validate manifest data, or raise :class:`PackageError` naming the package and field."""
    if not isinstance(data, dict):
        raise PackageError(f"model package {source}: {MANIFEST_NAME} is not a JSON object")
    try:
        return Manifest.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"]) or "(manifest)"
            problems.append(f"{where}: {item['msg']}")
        raise PackageError(
            f"model package {source}: invalid {MANIFEST_NAME}: " + "; ".join(problems)
        ) from None
