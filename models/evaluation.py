"""Diagnostic accuracy statistics for validating a model on a labelled cohort (pure).

Per label: the ROC curve, its area with a 95 % confidence interval by DeLong's method
(DeLong, DeLong & Clarke-Pearson 1988, computed with midranks as in Sun & Xu 2014),
sensitivity and specificity at the model's operating threshold with Wilson score intervals,
and the confusion matrix at that threshold. These are the numbers a hospital looks at before
go-live and after any model change; ``models.evaluation_report`` renders them as HTML.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

Z_95 = 1.959963984540054


def _midranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(values.size, dtype=np.float64)
    start = 0
    while start < values.size:
        end = start
        while end + 1 < values.size and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = 0.5 * (start + end) + 1.0
        start = end + 1
    return ranks


def roc_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (probability a positive outranks a negative; ties count half)."""
    auc, _ = delong(truth, scores)
    return auc


def delong(truth: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """AUC and its DeLong variance. Needs at least one positive and one negative."""
    truth = np.asarray(truth, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = scores[truth], scores[~truth]
    m, n = positives.size, negatives.size
    if m == 0 or n == 0:
        raise ValueError("AUC needs both positive and negative cases")
    rank_positive = _midranks(positives)
    rank_negative = _midranks(negatives)
    rank_all = _midranks(np.concatenate([positives, negatives]))
    auc = float((rank_all[:m].sum() / m - (m + 1) / 2.0) / n)
    v_positive = (rank_all[:m] - rank_positive) / n
    v_negative = 1.0 - (rank_all[m:] - rank_negative) / m
    s_positive = float(np.var(v_positive, ddof=1)) if m > 1 else 0.0
    s_negative = float(np.var(v_negative, ddof=1)) if n > 1 else 0.0
    return auc, s_positive / m + s_negative / n


def auc_confidence_interval(truth: np.ndarray, scores: np.ndarray) -> tuple[float, float, float]:
    """AUC with a 95 % DeLong interval, clipped to [0, 1]."""
    auc, variance = delong(truth, scores)
    half = Z_95 * math.sqrt(max(variance, 0.0))
    return auc, max(0.0, auc - half), min(1.0, auc + half)


def wilson_interval(successes: int, total: int) -> tuple[float, float]:
    """95 % Wilson score interval for a proportion; (0, 1) when ``total`` is 0."""
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    denominator = 1 + Z_95**2 / total
    centre = (p + Z_95**2 / (2 * total)) / denominator
    half = Z_95 * math.sqrt(p * (1 - p) / total + Z_95**2 / (4 * total**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def roc_curve(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False positive rates, true positive rates and thresholds, from (0,0) to (1,1)."""
    truth = np.asarray(truth, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_truth = scores[order], truth[order]
    distinct = np.flatnonzero(np.diff(sorted_scores)) if scores.size else np.array([], dtype=int)
    cut = np.concatenate([distinct, [scores.size - 1]]) if scores.size else np.array([], dtype=int)
    true_positives = np.cumsum(sorted_truth)[cut]
    false_positives = (cut + 1) - true_positives
    positives, negatives = max(int(truth.sum()), 1), max(int((~truth).sum()), 1)
    fpr = np.concatenate([[0.0], false_positives / negatives])
    tpr = np.concatenate([[0.0], true_positives / positives])
    thresholds = np.concatenate([[np.inf], sorted_scores[cut]])
    return fpr, tpr, thresholds


def youden_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold (predict positive at or above it) that maximises TPR - FPR."""
    fpr, tpr, thresholds = roc_curve(truth, scores)
    best = int(np.argmax(tpr[1:] - fpr[1:])) + 1
    return float(thresholds[best])


@dataclass(frozen=True)
class ConfusionMatrix:
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int

    @classmethod
    def at(cls, truth: np.ndarray, scores: np.ndarray, threshold: float) -> ConfusionMatrix:
        truth = np.asarray(truth, dtype=bool)
        predicted = np.asarray(scores) >= threshold
        return cls(
            true_positives=int((predicted & truth).sum()),
            false_positives=int((predicted & ~truth).sum()),
            true_negatives=int((~predicted & ~truth).sum()),
            false_negatives=int((~predicted & truth).sum()),
        )


@dataclass(frozen=True)
class LabelEvaluation:
    label: str
    threshold: float
    positives: int
    negatives: int
    auc: float | None
    auc_ci: tuple[float, float] | None
    sensitivity: float | None
    sensitivity_ci: tuple[float, float] | None
    specificity: float | None
    specificity_ci: tuple[float, float] | None
    confusion: ConfusionMatrix
    roc: dict[str, list[float]] = field(default_factory=dict)


def evaluate_label(
    label: str, truth: Sequence[bool], scores: Sequence[float], threshold: float
) -> LabelEvaluation:
    truth_array = np.asarray(truth, dtype=bool)
    score_array = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(truth_array.sum()), int((~truth_array).sum())
    confusion = ConfusionMatrix.at(truth_array, score_array, threshold)
    auc = auc_ci = None
    roc: dict[str, list[float]] = {}
    if positives and negatives:
        value, low, high = auc_confidence_interval(truth_array, score_array)
        auc, auc_ci = value, (low, high)
        fpr, tpr, _ = roc_curve(truth_array, score_array)
        roc = {"fpr": [round(v, 5) for v in fpr], "tpr": [round(v, 5) for v in tpr]}
    sensitivity = confusion.true_positives / positives if positives else None
    specificity = confusion.true_negatives / negatives if negatives else None
    return LabelEvaluation(
        label=label,
        threshold=threshold,
        positives=positives,
        negatives=negatives,
        auc=auc,
        auc_ci=auc_ci,
        sensitivity=sensitivity,
        sensitivity_ci=wilson_interval(confusion.true_positives, positives) if positives else None,
        specificity=specificity,
        specificity_ci=wilson_interval(confusion.true_negatives, negatives) if negatives else None,
        confusion=confusion,
        roc=roc,
    )


@dataclass(frozen=True)
class CohortEvaluation:
    """The evaluation of one model on one cohort."""

    model: dict[str, Any]
    cohort: dict[str, Any]
    labels: tuple[LabelEvaluation, ...]
    not_analysable: tuple[dict[str, str], ...] = ()
    unlabelled: tuple[str, ...] = ()
    domain: dict[str, Any] = field(default_factory=dict)  # the input-domain gate's calibration

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
