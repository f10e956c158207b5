"""Validation statistics: AUC and DeLong variance against brute force, Wilson, ROC, report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from integrations.errors import DatasetError
from models.cohort import read_labels
from models.evaluation import (
    CohortEvaluation,
    auc_confidence_interval,
    delong,
    evaluate_label,
    roc_auc,
    roc_curve,
    wilson_interval,
    youden_threshold,
)
from models.evaluation_report import render_html


def _brute_force(truth: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    positives, negatives = scores[truth], scores[~truth]
    psi = (positives[:, None] > negatives[None, :]) + 0.5 * (
        positives[:, None] == negatives[None, :]
    )
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    variance = v10.var(ddof=1) / positives.size + v01.var(ddof=1) / negatives.size
    return float(psi.mean()), float(variance)


def test_auc_and_delong_variance_match_the_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random(120) < 0.4
    scores = np.round(rng.normal(truth * 0.8, 1.0), 1)  # rounding makes ties
    expected_auc, expected_variance = _brute_force(truth, scores)
    auc, variance = delong(truth, scores)
    assert auc == pytest.approx(expected_auc, abs=1e-12)
    assert variance == pytest.approx(expected_variance, rel=1e-9)
    value, low, high = auc_confidence_interval(truth, scores)
    assert low < value < high and high - low == pytest.approx(
        2 * 1.959964 * variance**0.5, rel=1e-4
    )


def test_auc_extremes_and_refusal() -> None:
    assert roc_auc(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(np.array([0, 0, 1, 1], bool), np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(np.array([0, 1], bool), np.array([0.5, 0.5])) == 0.5
    with pytest.raises(ValueError):
        roc_auc(np.array([1, 1], bool), np.array([0.1, 0.2]))


def test_wilson_interval_reference_values() -> None:
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and 0.15 < high < 0.17


def test_roc_curve_and_youden_threshold() -> None:
    truth = np.array([0, 0, 0, 1, 1, 1], bool)
    scores = np.array([0.1, 0.3, 0.35, 0.4, 0.8, 0.9])
    fpr, tpr, _thresholds = roc_curve(truth, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert youden_threshold(truth, scores) == pytest.approx(0.4)
    evaluation = evaluate_label("Pneumothorax", truth.tolist(), scores.tolist(), 0.4)
    assert evaluation.sensitivity == 1.0 and evaluation.specificity == 1.0
    assert evaluation.confusion.true_positives == 3 and evaluation.confusion.false_positives == 0


def test_report_html_has_svg_roc_and_escapes_text() -> None:
    label = evaluate_label("<Mass>", [True, False, True, False], [0.9, 0.2, 0.6, 0.7], 0.5)
    page = render_html(
        CohortEvaluation(
            model={
                "name": "chest-xray",
                "version": "1",
                "weights_sha256": "ab",
                "clinical_use": False,
            },
            cohort={
                "name": "site A",
                "studies_evaluated": 4,
                "not_analysable": 0,
                "missing": 0,
                "unlabelled": 0,
            },
            labels=(label,),
        )
    )
    assert "<svg" in page and "&lt;Mass&gt;" in page and "<Mass>" not in page
    assert "DeLong" in page and "Wilson" in page


def test_labels_csv_in_both_forms(tmp_path: Path) -> None:
    listed = tmp_path / "listed.csv"
    listed.write_text("StudyInstanceUID,labels\n1.2.3,Pneumothorax|Effusion\n1.2.4,\n")
    truth, labels = read_labels(listed)
    assert truth == {"1.2.3": {"Pneumothorax", "Effusion"}, "1.2.4": frozenset()}
    assert labels == ("Pneumothorax", "Effusion")
    columns = tmp_path / "columns.csv"
    columns.write_text("StudyInstanceUID,Fracture\n1.2.5,1\n1.2.6,0\n")
    truth, labels = read_labels(columns)
    assert truth == {"1.2.5": {"Fracture"}, "1.2.6": frozenset()} and labels == ("Fracture",)
    bad = tmp_path / "bad.csv"
    bad.write_text("StudyInstanceUID,Fracture\n1.2.7,maybe\n")
    with pytest.raises(DatasetError, match="maybe"):
        read_labels(bad)
