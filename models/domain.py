"""Input-domain statistics and the out-of-distribution gate of a model package (pure: no I/O).

A network meeting an image unlike anything it was trained on still outputs probabilities,
often confident ones. Each package therefore carries, beside the modality, body part and view
its manifest declares, what its training inputs looked like:

- a Gaussian over the network's penultimate-layer features (the globally pooled activations
  the classifier reads): mean and a Ledoit-Wolf shrinkage precision (Ledoit & Wolf 2004;
  a feature dimension of the order of the sample count makes the plain covariance singular),
  stored in ``domain.pt`` beside the weights and hashed in the manifest like them. The score
  of one input is its Mahalanobis distance to that mean (Lee et al., NeurIPS 2018, pooled
  over classes: the demo labels are multi-label and mostly absent);
- the range of four intensity statistics of the preprocessed input (mean, standard
  deviation, share of values at the low and at the high end of the value range), widened by
  a margin: a blank, saturated or inverted input is caught before any feature is read;
- the score ``limit``, calibrated on held-out in-domain inputs and generated out-of-domain
  sets (noise, another body part, inverted MONOCHROME1, a foreign object, a plain image
  that is not a phantom of the analyzer), with the false-rejection rate, detection rate and
  AUC it reached (:func:`calibrate`).

A unit (one image, or one series: the median over its slices) whose intensity statistics
fall outside the range or whose score exceeds the limit makes the study "not analysable:
image unlike the model's training data (score X, limit Y)" (:func:`gate`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.evaluation import roc_auc
from models.package import DomainSpec, IntensityRange

REASON_PREFIX = "image unlike the model's training data"
STATISTICS = ("mean", "std", "low_fraction", "high_fraction")
END_SHARE = 0.02  # "at the end of the value range": within 2 % of its span
# The intensity check is coarse (blank, saturated, inverted inputs); the feature score does
# the fine work. The fitted range is widened by its span on each side, and by at least 0.1
# (statistics are shares or fractions of the value range).
INTENSITY_MARGIN = 1.0
INTENSITY_FLOOR = 0.1
FALSE_REJECTION_TARGET = 0.01


@dataclass(frozen=True)
class Observation:
    """What one network call saw: pooled features and intensity statistics per input row."""

    features: np.ndarray  # rows x d
    statistics: np.ndarray  # rows x 4 (STATISTICS)


@dataclass(frozen=True)
class UnitScore:
    score: float
    statistics: np.ndarray  # 4


@dataclass(frozen=True)
class DomainModel:
    """A package's fitted domain: the spec from the manifest and the feature Gaussian."""

    spec: DomainSpec
    mean: np.ndarray  # d, float64
    precision: np.ndarray  # d x d, float64

    @classmethod
    def from_tensors(cls, spec: DomainSpec, tensors: dict[str, torch.Tensor]) -> DomainModel:
        return cls(
            spec,
            tensors["mean"].double().numpy(),
            tensors["precision"].double().numpy(),
        )

    def scores(self, features: np.ndarray) -> np.ndarray:
        return mahalanobis(features, self.mean, self.precision)

    def units(self, observations: Sequence[Observation]) -> list[UnitScore]:
        return unit_scores(observations, self.spec.unit, self)


def intensity_statistics(inputs: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Per input row (N x C x H x W): mean, std, share at the low and at the high end."""
    low, high = value_range
    span = high - low
    flat = inputs.reshape(inputs.shape[0], -1).astype(np.float64)
    scaled = (flat - low) / span
    return np.stack(
        [
            scaled.mean(axis=1),
            scaled.std(axis=1),
            (scaled <= END_SHARE).mean(axis=1),
            (scaled >= 1.0 - END_SHARE).mean(axis=1),
        ],
        axis=1,
    )


def shrunk_gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean, Ledoit-Wolf shrinkage precision and the shrinkage used (towards scaled identity)."""
    x = np.asarray(features, dtype=np.float64)
    n, d = x.shape
    mean = x.mean(axis=0)
    centred = x - mean
    covariance = centred.T @ centred / n
    target = np.trace(covariance) / d
    # Ledoit & Wolf (2004), lemma 3.3 estimates of the shrinkage intensity
    delta = np.sum((covariance - target * np.eye(d)) ** 2) / d
    squares = centred**2
    beta_bar = (np.sum(squares.T @ squares) / n - np.sum(covariance**2)) / (d * n)
    shrinkage = float(np.clip(beta_bar / delta if delta > 0 else 1.0, 0.0, 1.0))
    shrunk = (1 - shrinkage) * covariance + shrinkage * target * np.eye(d)
    shrunk += 1e-9 * max(target, 1e-12) * np.eye(d)
    return mean, np.linalg.inv(shrunk), shrinkage


def mahalanobis(features: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    centred = np.asarray(features, dtype=np.float64) - mean
    return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", centred, precision, centred), 0.0))


def unit_scores(
    observations: Sequence[Observation], unit: str, model: DomainModel
) -> list[UnitScore]:
    """One score per image, or per series (one network call): the median over its slices."""
    units: list[UnitScore] = []
    for observation in observations:
        scores = model.scores(observation.features)
        if unit == "image":
            units.extend(
                UnitScore(float(score), stats)
                for score, stats in zip(scores, observation.statistics, strict=True)
            )
        elif scores.size:
            units.append(
                UnitScore(float(np.median(scores)), np.median(observation.statistics, axis=0))
            )
    return units


def intensity_range(statistics: np.ndarray) -> IntensityRange:
    """The fitted range of each statistic, widened by :data:`INTENSITY_MARGIN` of its span."""
    bounds = {}
    for column, name in enumerate(STATISTICS):
        low, high = float(statistics[:, column].min()), float(statistics[:, column].max())
        margin = max(INTENSITY_MARGIN * (high - low), INTENSITY_FLOOR)
        bounds[name] = (round(low - margin, 4), round(high + margin, 4))
    return IntensityRange(**bounds)


def intensity_problem(statistics: np.ndarray, accepted: IntensityRange) -> str | None:
    for column, name in enumerate(STATISTICS):
        low, high = getattr(accepted, name)
        value = float(statistics[column])
        if not low <= value <= high:
            return f"intensity {name.replace('_', ' ')} {value:.3f} outside {low:.3f}..{high:.3f}"
    return None


@dataclass(frozen=True)
class GateOutcome:
    """The study's verdict: ``reason`` is None when every unit is in domain."""

    reason: str | None
    summary: dict[str, Any]


def gate(model: DomainModel, observations: Sequence[Observation]) -> GateOutcome:
    """Reject the study when any unit it read is outside the domain (the worst one is named)."""
    units = model.units(observations)
    limit = model.spec.limit
    summary: dict[str, Any] = {
        "checked": True,
        "unit": model.spec.unit,
        "units": len(units),
        "limit": round(limit, 3),
        "max_score": round(max((u.score for u in units), default=0.0), 3),
    }
    for item in units:
        problem = intensity_problem(item.statistics, model.spec.intensity)
        if problem is not None:
            return GateOutcome(f"{REASON_PREFIX} ({problem})", {**summary, "rejected_by": problem})
    worst = max(units, key=lambda u: u.score, default=None)
    if worst is not None and worst.score > limit:
        return GateOutcome(
            f"{REASON_PREFIX} (score {worst.score:.1f}, limit {limit:.1f})",
            {**summary, "rejected_by": "feature score"},
        )
    return GateOutcome(None, summary)


def rejected(unit: UnitScore, accepted: IntensityRange, limit: float) -> bool:
    """Whether one unit fails the gate (intensity range or feature score)."""
    return intensity_problem(unit.statistics, accepted) is not None or unit.score > limit


def calibrate(
    in_domain: Sequence[UnitScore],
    out_of_domain: Mapping[str, Sequence[UnitScore]],
    accepted: IntensityRange,
) -> tuple[float, dict[str, Any]]:
    """The score limit, and how the whole gate does on the held-out sets it was chosen on.

    The limit keeps the in-domain false-rejection rate at :data:`FALSE_REJECTION_TARGET`:
    the 99th percentile of held-out in-domain scores, moved up to the geometric mean of that
    and the 5th percentile of the out-of-domain scores when they lie above it (room for real
    in-domain images, which vary more than generated ones). Rates count the whole gate
    (intensity range or score); the AUC is the feature score's alone.
    """
    inside = np.array([unit.score for unit in in_domain])
    outside = np.array([unit.score for units in out_of_domain.values() for unit in units])
    high_inside = float(np.quantile(inside, 1.0 - FALSE_REJECTION_TARGET))
    low_outside = float(np.quantile(outside, 0.05))
    limit = float(np.sqrt(high_inside * low_outside)) if low_outside > high_inside else high_inside

    def share_rejected(units: Sequence[UnitScore]) -> float:
        return round(float(np.mean([rejected(u, accepted, limit) for u in units])), 4)

    truth = np.concatenate([np.zeros(inside.size, bool), np.ones(outside.size, bool)])
    return limit, {
        "limit": round(limit, 3),
        "in_domain": int(inside.size),
        "in_domain_false_rejection": share_rejected(in_domain),
        "out_of_domain": int(outside.size),
        "ood_detection": share_rejected([u for units in out_of_domain.values() for u in units]),
        "score_auc": round(roc_auc(truth, np.concatenate([inside, outside])), 4),
        "per_set_detection": {name: share_rejected(units) for name, units in out_of_domain.items()},
        "in_domain_score_p50_p99": [
            round(float(np.quantile(inside, 0.5)), 3),
            round(high_inside, 3),
        ],
        "rule": "limit = 99th percentile of held-out in-domain scores, raised to the geometric "
        "mean with the 5th percentile of out-of-domain scores when that lies above",
    }
