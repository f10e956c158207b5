"""What every analyzer shares: results, batched prediction, Grad-CAM, domain gate (pure).

An analyzer wraps one loaded package. :meth:`BaseAnalyzer.analyze` times the work, turns
:class:`~models.preprocess.NotAnalysable` into a ``not_analysable`` result and leaves other
exceptions (a bug) to the caller, so that a task fails visibly instead of reporting "nothing
found". Out of memory is retried with smaller batches, then on the CPU (a copy of the network
made on first need, from the loaded weights); when nothing fits,
:class:`~integrations.errors.AIUnavailableError` goes to the caller: "AI unavailable".

The input-domain gate (:mod:`models.domain`) sits here, so every analyzer gets it: each
:meth:`BaseAnalyzer.logits` call also records the inputs' penultimate-layer features and
intensity statistics; when the package declares a domain and any image (or series, for
:attr:`BaseAnalyzer.domain_unit` ``series``) the study read lies outside it, the study's result
is replaced by "not analysable: image unlike the model's training data (score X, limit Y)":
no finding, no heatmap, nothing to escalate. A package without a domain (non-clinical only;
the manifest refuses a clinical one) is analysed and its result says ``domain.checked: false``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch
from pydicom import Dataset
from torch import nn

from integrations.dicom.body_part import resolve_body_part
from models import runtime
from models.domain import Observation, gate, intensity_statistics
from models.gradcam import GradCAM
from models.loading import LoadedPackage
from models.networks import build_network
from models.package import LabelSpec, Manifest
from models.preprocess import NotAnalysable, describe
from models.results import (
    AnalysisResult,
    Finding,
    Heatmap,
    ImageReference,
    Measurement,
    ModelIdentity,
)
from models.runtime import run_with_fallback, sigmoid

NO_DOMAIN = "the package declares no input domain: out-of-domain images are not detected"


@dataclass(frozen=True)
class Skipped:
    """An image or series left out of the analysis, and why."""

    reference: ImageReference | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "image": asdict(self.reference) if self.reference is not None else None,
            "reason": self.reason,
        }


def label_probabilities(manifest: Manifest, logits: np.ndarray) -> dict[str, np.ndarray]:
    """Per label, the probability for each row of ``logits``; derived labels included."""
    probabilities = sigmoid(logits)
    per_label: dict[str, np.ndarray] = {}
    for label in manifest.labels:
        if label.output_index is not None:
            per_label[label.name] = probabilities[:, label.output_index]
    for label in manifest.labels:
        if label.derived is not None:
            stacked = np.stack([per_label[name] for name in label.derived.labels], axis=1)
            per_label[label.name] = np.sort(stacked, axis=1)[:, -2]  # second highest
    return per_label


class BaseAnalyzer:
    """Common behaviour; subclasses implement :meth:`_analyze`."""

    kind: ClassVar[str] = ""
    required_labels: ClassVar[tuple[str, ...]] = ()
    domain_unit: ClassVar[str] = "image"  # what one domain score is for: "image" or "series"

    def __init__(self, package: LoadedPackage) -> None:
        self.package = package
        self.manifest: Manifest = package.manifest
        self.name: str = package.manifest.name
        self.identity: ModelIdentity = package.manifest.identity()
        self.device: torch.device = package.device
        self._gradcam = GradCAM(package.network, package.manifest.architecture.gradcam_layer)
        self._seen = threading.local()  # per analysis: what the network was shown
        # the network and its Grad-CAM on another device (the CPU after out of memory)
        self._elsewhere: dict[str, tuple[nn.Module, GradCAM]] = {}
        self._elsewhere_lock = threading.Lock()

    # ------------------------------------------------------------------ protocol entry point
    def analyze(self, datasets: Sequence[Dataset]) -> AnalysisResult:
        started = time.perf_counter()
        result, observations = self.observe(datasets)
        if result.status == "analysed":
            result = self._domain_gated(result, observations)
        return replace(result, inference_seconds=time.perf_counter() - started)

    def observe(self, datasets: Sequence[Dataset]) -> tuple[AnalysisResult, list[Observation]]:
        """The ungated result and what the network was shown (domain fitting reads this)."""
        self._seen.observations = []
        try:
            result = self._analyze(list(datasets))
        except NotAnalysable as reason:
            result = self.not_analysable(reason.reason)
        finally:
            observations: list[Observation] = self._seen.observations
            self._seen.observations = None
        return result, observations

    def _domain_gated(
        self, result: AnalysisResult, observations: list[Observation]
    ) -> AnalysisResult:
        domain = self.package.domain
        if domain is None:
            return replace(
                result, extra={**result.extra, "domain": {"checked": False, "note": NO_DOMAIN}}
            )
        outcome = gate(domain, observations)
        if outcome.reason is not None:
            return self.not_analysable(outcome.reason, {"domain": outcome.summary})
        return replace(result, extra={**result.extra, "domain": outcome.summary})

    def _analyze(self, datasets: list[Dataset]) -> AnalysisResult:
        raise NotImplementedError

    # ---------------------------------------------------------------------------- helpers
    def not_analysable(self, reason: str, extra: Mapping[str, Any] | None = None) -> AnalysisResult:
        return AnalysisResult(
            analyzer=self.name,
            model=self.identity,
            status="not_analysable",
            reason=reason,
            extra=dict(extra or {}),
        )

    def analysed(
        self,
        findings: Sequence[Finding],
        heatmaps: Sequence[Heatmap],
        images: Sequence[ImageReference],
        extra: Mapping[str, Any],
    ) -> AnalysisResult:
        """The result of a study that was analysed (``images``: every image the model read)."""
        return AnalysisResult(
            analyzer=self.name,
            model=self.identity,
            status="analysed",
            findings=tuple(findings),
            heatmaps=tuple(heatmaps),
            analysed_images=tuple(images),
            extra=dict(extra),
        )

    def header_problem(self, dataset: Dataset) -> str | None:
        """Why the manifest's intended modality / body part excludes this instance, if it does."""
        modality = str(dataset.get("Modality", "")).upper()
        if modality not in self.manifest.modalities:
            return (
                f"{describe(_reference(dataset))}: modality {modality or '(missing)'} is not one "
                f"of {', '.join(self.manifest.modalities)}"
            )
        # Routing resolved the body part from every header; here only what the instance
        # itself says can refuse it, read the same way ("SCHAEDEL" is HEAD, "" says nothing).
        body_part = resolve_body_part(
            body_part_examined=str(dataset.get("BodyPartExamined", "") or ""),
            series_description=str(dataset.get("SeriesDescription", "") or ""),
            protocol_name=str(dataset.get("ProtocolName", "") or ""),
        ).body_part
        if body_part and self.manifest.body_parts and body_part not in self.manifest.body_parts:
            return (
                f"{describe(_reference(dataset))}: body part {body_part} is not one of "
                f"{', '.join(self.manifest.body_parts)}"
            )
        return None

    def on_device(self, device: torch.device) -> tuple[nn.Module, GradCAM]:
        """The network (and its Grad-CAM) on ``device``: the loaded one, or a copy made once."""
        if device == self.device:
            return self.package.network, self._gradcam
        with self._elsewhere_lock:
            found = self._elsewhere.get(str(device))
            if found is None:
                network = build_network(self.manifest.architecture)
                state = self.package.network.state_dict()
                network.load_state_dict(
                    {key: value.detach().to(device) for key, value in state.items()}
                )
                network.eval()
                network.to(device)
                for parameter in network.parameters():
                    parameter.requires_grad_(False)
                found = (network, GradCAM(network, self.manifest.architecture.gradcam_layer))
                self._elsewhere[str(device)] = found
        return found

    def warm_up(self) -> None:
        """One inference and one Grad-CAM pass on a blank input: torch sets its kernels up on
        first use (seconds on a loaded CPU), which the first study would otherwise wait for."""
        height, width = self.manifest.input.size
        channels = self.manifest.architecture.in_channels
        inputs = np.zeros((1, channels, height, width), dtype=np.float32)
        network, cam = self.on_device(self.device)
        runtime.predict_logits_and_features(network, inputs, self.device, 1)
        cam(runtime.to_device(inputs, self.device), [0])

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """Logits for ``inputs``; one call is one image batch, or one whole series."""

        def run(device: torch.device, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
            network, _ = self.on_device(device)
            return runtime.predict_logits_and_features(network, inputs, device, batch_size)

        logits, features = run_with_fallback(
            run, self.device, self.manifest.input.batch_size, what=f"{self.name} inference"
        )
        observations = getattr(self._seen, "observations", None)
        if observations is not None:
            statistics = intensity_statistics(inputs, self.manifest.input.value_range)
            observations.append(Observation(features.astype(np.float64), statistics))
        return logits

    def gradcam(self, inputs: np.ndarray, labels: Sequence[LabelSpec]) -> dict[str, np.ndarray]:
        """Grad-CAM maps at network resolution for ``labels`` on the images in ``inputs``."""
        indices = [label.output_index for label in labels if label.output_index is not None]
        if not indices:
            return {}

        def run(device: torch.device, batch_size: int) -> dict[int, torch.Tensor]:
            _, cam = self.on_device(device)
            parts: list[dict[int, torch.Tensor]] = []
            for start in range(0, max(len(inputs), 1), batch_size):
                _, chunk_maps = cam(
                    runtime.to_device(inputs[start : start + batch_size], device), indices
                )
                parts.append({index: value.cpu() for index, value in chunk_maps.items()})
            return {index: torch.cat([part[index] for part in parts]) for index in parts[0]}

        # The whole input at once (one pass), smaller pieces or the CPU only if that fails.
        maps = run_with_fallback(
            run, self.device, max(len(inputs), 1), what=f"{self.name} Grad-CAM"
        )
        return {
            label.name: maps[label.output_index].cpu().numpy()
            for label in labels
            if label.output_index is not None
        }

    def finding(
        self,
        label: LabelSpec,
        probability: float,
        images: Sequence[ImageReference],
        measurements: Sequence[Measurement] = (),
    ) -> Finding:
        return Finding(
            label=label.name,
            code=label.code.concept(),
            probability=float(probability),
            threshold=float(label.threshold),
            present=bool(probability >= label.threshold),
            tier=label.tier,
            images=tuple(images),
            measurements=tuple(measurements),
        )


def nothing_to_analyse(what: str, skipped: Sequence[Skipped]) -> NotAnalysable:
    """The refusal when every image was skipped: ``no {what} to analyse: {the reasons}``."""
    reasons = "; ".join(item.reason for item in skipped) or "no images were given"
    return NotAnalysable(f"no {what} to analyse: {reasons}")


def _reference(dataset: Dataset) -> ImageReference:
    return ImageReference(
        sop_class_uid=str(dataset.get("SOPClassUID", "")),
        sop_instance_uid=str(dataset.get("SOPInstanceUID", "")),
        series_instance_uid=str(dataset.get("SeriesInstanceUID", "")),
    )
