"""An evaluation as a self-contained HTML page with ROC curves drawn in SVG (pure)."""

from __future__ import annotations

import html

from models.evaluation import CohortEvaluation, LabelEvaluation


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _interval(values: tuple[float, float] | None, percent: bool = True) -> str:
    if values is None:
        return ""
    low, high = values
    return f" ({100 * low:.1f}–{100 * high:.1f}%)" if percent else f" ({low:.3f}–{high:.3f})"


def roc_svg(label: LabelEvaluation, size: int = 220) -> str:
    """The ROC curve with the chance diagonal and the operating point."""
    if not label.roc:
        return "<p>ROC needs positive and negative cases.</p>"
    margin = 28
    span = size - 2 * margin

    def point(fpr: float, tpr: float) -> str:
        return f"{margin + fpr * span:.1f},{size - margin - tpr * span:.1f}"

    curve = " ".join(point(f, t) for f, t in zip(label.roc["fpr"], label.roc["tpr"], strict=True))
    sensitivity = label.sensitivity or 0.0
    specificity = label.specificity if label.specificity is not None else 1.0
    operating = point(1 - specificity, sensitivity).split(",")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" '
        f'aria-label="ROC curve for {html.escape(label.label)}">'
        f'<rect x="{margin}" y="{margin}" width="{span}" height="{span}" fill="none" stroke="#999"/>'
        f'<line x1="{margin}" y1="{size - margin}" x2="{size - margin}" y2="{margin}" '
        'stroke="#bbb" stroke-dasharray="4 3"/>'
        f'<polyline points="{curve}" fill="none" stroke="#1f5fa8" stroke-width="2"/>'
        f'<circle cx="{operating[0]}" cy="{operating[1]}" r="4" fill="#c0392b"/>'
        f'<text x="{size / 2}" y="{size - 6}" font-size="11" text-anchor="middle">1 − specificity</text>'
        f'<text x="10" y="{size / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 10 {size / 2})">sensitivity</text>'
        "</svg>"
    )


def render_html(evaluation: CohortEvaluation) -> str:
    model = evaluation.model
    cohort = evaluation.cohort
    rows = []
    cards = []
    for label in evaluation.labels:
        matrix = label.confusion
        rows.append(
            "<tr>"
            f"<td>{html.escape(label.label)}</td><td>{label.positives}</td><td>{label.negatives}</td>"
            f"<td>{'–' if label.auc is None else f'{label.auc:.3f}'}{_interval(label.auc_ci, False)}</td>"
            f"<td>{_percent(label.sensitivity)}{_interval(label.sensitivity_ci)}</td>"
            f"<td>{_percent(label.specificity)}{_interval(label.specificity_ci)}</td>"
            f"<td>{label.threshold:.3f}</td>"
            f"<td>{matrix.true_positives}</td><td>{matrix.false_positives}</td>"
            f"<td>{matrix.false_negatives}</td><td>{matrix.true_negatives}</td>"
            "</tr>"
        )
        cards.append(
            f"<figure><figcaption>{html.escape(label.label)}</figcaption>{roc_svg(label)}</figure>"
        )
    problems = "".join(
        f"<li>{html.escape(item['study_instance_uid'])}: {html.escape(item['reason'])}</li>"
        for item in evaluation.not_analysable
    )
    domain = evaluation.domain
    calibration = domain.get("calibration") or {}
    domain_html = (
        '<h2>Input-domain gate</h2><p class="warning">The package declares no input domain: '
        "images unlike its training data are not detected.</p>"
        if domain and not domain.get("declared")
        else (
            "<h2>Input-domain gate</h2>"
            f"<p>{html.escape(str(domain.get('score')))} per {html.escape(str(domain.get('unit')))}"
            f", limit {domain.get('limit')}. Calibration (held-out generated sets): in-domain "
            f"false rejection {_percent(calibration.get('in_domain_false_rejection'))} of "
            f"{calibration.get('in_domain')}, out-of-domain detection "
            f"{_percent(calibration.get('ood_detection'))} of {calibration.get('out_of_domain')}"
            f", score AUC {calibration.get('score_auc')}; per set: "
            f"{html.escape(str(calibration.get('per_set_detection')))}. On this cohort (in domain"
            f" by intent) the gate refused {domain.get('cohort_refused')} of "
            f"{domain.get('cohort_studies')} studies.</p>"
            if domain
            else ""
        )
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Evaluation of {html.escape(str(model.get("name")))} {html.escape(str(model.get("version")))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} figure {{ display: inline-block; margin: 8px; }}
.warning {{ background: #fff3cd; padding: 8px; border: 1px solid #e0c36a; }}
</style></head><body>
<h1>{html.escape(str(model.get("name")))} {html.escape(str(model.get("version")))} on {html.escape(str(cohort.get("name")))}</h1>
<p>Weights SHA-256 <code>{html.escape(str(model.get("weights_sha256")))}</code>;
clinical use: {"yes" if model.get("clinical_use") else "<strong>no</strong>"}.
{html.escape(str(model.get("intended_use", "")))}</p>
<p class="warning">Results describe this cohort only. 95% intervals: DeLong for AUC, Wilson for
sensitivity and specificity; the operating point is the manifest threshold.</p>
<p>{cohort.get("studies_evaluated")} studies evaluated, {cohort.get("not_analysable")} not analysable,
{cohort.get("missing")} listed without images, {cohort.get("unlabelled")} without labels.</p>
<table><thead><tr><th>Label</th><th>Pos</th><th>Neg</th><th>AUC (95% CI)</th><th>Sensitivity</th>
<th>Specificity</th><th>Threshold</th><th>TP</th><th>FP</th><th>FN</th><th>TN</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>ROC curves</h2><div>{"".join(cards)}</div>
{domain_html}
{f"<h2>Not analysable</h2><ul>{problems}</ul>" if problems else ""}
</body></html>
"""
