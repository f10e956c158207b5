"""evaluate-model: validate an installed model on a hospital's own labelled cohort (I/O).

    index_cohort ─▶ score_cohort (the analyzer on every labelled study) ─▶ write_report

Input: a folder of DICOM studies and a CSV of Study Instance UID → labels (see
``models.cohort``). Output, in ``output_dir``: ``evaluation.json`` (per-label AUC with a
DeLong 95 % interval, sensitivity and specificity with Wilson intervals at the manifest's
threshold, the confusion matrix, the ROC points, every study's probabilities) and
``evaluation.html`` with the ROC curves. Run it before go-live and after any model change::

    python -m flows.evaluate_model chest-xray /data/cohort /data/cohort/labels.csv out/
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from integrations.errors import DatasetError

FLOW_NAME = "evaluate-model"


@task(name="index_cohort", persist_result=False)
def index_cohort(cohort_dir: str, labels_csv: str) -> dict[str, Any]:
    from models.cohort import load_cohort

    cohort = load_cohort(Path(cohort_dir), Path(labels_csv))
    return {
        "studies": {uid: [str(path) for path in paths] for uid, paths in cohort.studies.items()},
        "truth": {uid: sorted(labels) for uid, labels in cohort.truth.items()},
        "labels": list(cohort.labels),
        "unreadable": cohort.unreadable,
    }


@task(name="score_cohort", persist_result=False)
def score_cohort(
    model_name: str, models_dir: str, device: str, studies: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """The analyzer's probability for every label on every study (small records only)."""
    from pydicom import dcmread

    from models.package_registry import get_registry

    logger = get_run_logger()
    # Evaluation reads a labelled cohort, never a patient's study: any package may be scored.
    analyzer = get_registry(Path(models_dir), device, allow_non_clinical=True).get(model_name)
    records = []
    for number, (uid, paths) in enumerate(sorted(studies.items()), start=1):
        result = analyzer.analyze([dcmread(path) for path in paths])
        records.append(
            {
                "study_instance_uid": uid,
                "status": result.status,
                "reason": result.reason,
                "probabilities": {f.label: f.probability for f in result.findings},
                "seconds": round(result.inference_seconds, 4),
            }
        )
        if number % 25 == 0:
            logger.info("scored %d of %d studies", number, len(studies))
    return records


def evaluate_records(
    records: Sequence[dict[str, Any]],
    truth: dict[str, list[str]],
    cohort_labels: Sequence[str],
    model: dict[str, Any],
    thresholds: dict[str, float],
    cohort_name: str,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Per-label statistics over the analysed studies (pure; the flow's core)."""
    from models.evaluation import CohortEvaluation, evaluate_label

    unknown = [label for label in cohort_labels if label not in thresholds]
    if unknown:
        raise DatasetError(
            f"cohort labels not reported by {model['name']}: {', '.join(unknown)} "
            f"(the model reports {', '.join(thresholds)})"
        )
    analysed = [record for record in records if record["status"] == "analysed"]
    labels = []
    for label in cohort_labels:
        labels.append(
            evaluate_label(
                label,
                [label in truth[record["study_instance_uid"]] for record in analysed],
                [record["probabilities"][label] for record in analysed],
                thresholds[label],
            )
        )
    evaluation = CohortEvaluation(
        model=model,
        cohort={"name": cohort_name, "studies_evaluated": len(analysed), **extra},
        labels=tuple(labels),
        not_analysable=tuple(
            {"study_instance_uid": r["study_instance_uid"], "reason": str(r["reason"])}
            for r in records
            if r["status"] != "analysed"
        ),
    )
    document = evaluation.to_json()
    document["studies"] = list(records)
    return document


@task(name="write_report", persist_result=False)
def write_report(document: dict[str, Any], output_dir: str) -> dict[str, str]:
    from models.evaluation import CohortEvaluation, ConfusionMatrix, LabelEvaluation
    from models.evaluation_report import render_html

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
    labels = tuple(
        LabelEvaluation(
            **{
                **item,
                "confusion": ConfusionMatrix(**item["confusion"]),
                "auc_ci": tuple(item["auc_ci"]) if item["auc_ci"] else None,
                "sensitivity_ci": tuple(item["sensitivity_ci"]) if item["sensitivity_ci"] else None,
                "specificity_ci": tuple(item["specificity_ci"]) if item["specificity_ci"] else None,
            }
        )
        for item in document["labels"]
    )
    evaluation = CohortEvaluation(
        model=document["model"],
        cohort=document["cohort"],
        labels=labels,
        not_analysable=tuple(document["not_analysable"]),
        domain=document.get("domain", {}),
    )
    (out / "evaluation.html").write_text(render_html(evaluation), encoding="utf-8")
    return {"json": str(out / "evaluation.json"), "html": str(out / "evaluation.html")}


@flow(name=FLOW_NAME, persist_result=False, log_prints=False)
def evaluate_model(
    model_name: str,
    cohort_dir: str,
    labels_csv: str,
    output_dir: str,
    models_dir: str | None = None,
    device: str = "auto",
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model_name`` on a labelled cohort; returns the report paths and AUCs."""
    from models.loading import read_manifest
    from models.package_registry import get_registry

    if models_dir is None:
        from integrations.settings import load_settings

        models_dir = str(load_settings().models.dir)
    registry = get_registry(Path(models_dir), device, allow_non_clinical=True)
    paths = registry.package_paths().get(model_name)
    if not paths:
        registry.require([model_name])  # raises PackageError naming the package
    manifest = read_manifest(paths[0])  # type: ignore[index]
    cohort = index_cohort(cohort_dir, labels_csv)
    cohort_labels = labels or cohort["labels"]
    labelled = {uid: files for uid, files in cohort["studies"].items() if uid in cohort["truth"]}
    records = score_cohort(model_name, models_dir, device, labelled)
    document = evaluate_records(
        records,
        cohort["truth"],
        cohort_labels,
        {**asdict(manifest.identity()), "analyzer": manifest.analyzer},
        {label.name: label.threshold for label in manifest.labels},
        Path(cohort_dir).name,
        {
            "not_analysable": sum(1 for r in records if r["status"] != "analysed"),
            "missing": sum(1 for uid in cohort["truth"] if uid not in cohort["studies"]),
            "unlabelled": sum(1 for uid in cohort["studies"] if uid not in cohort["truth"]),
            "unreadable_files": len(cohort["unreadable"]),
        },
    )
    document["domain"] = domain_section(manifest, records)
    files = write_report(document, output_dir)
    return {
        **files,
        "auc": {item["label"]: item["auc"] for item in document["labels"]},
        "studies": document["cohort"]["studies_evaluated"],
    }


def domain_section(manifest: Any, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The input-domain gate: what the package declares, its calibration on held-out generated
    in-domain and out-of-domain sets, and how many cohort studies it refused."""
    from models.domain import REASON_PREFIX

    refused = sum(
        1
        for r in records
        if r["status"] != "analysed" and str(r["reason"]).startswith(REASON_PREFIX)
    )
    if manifest.domain is None:
        return {"declared": False, "cohort_refused": refused, "cohort_studies": len(records)}
    domain = manifest.domain
    return {
        "declared": True,
        "score": domain.score,
        "unit": domain.unit,
        "limit": domain.limit,
        "intensity": domain.intensity.model_dump(mode="json"),
        "calibration": domain.calibration,
        "cohort_refused": refused,
        "cohort_studies": len(records),
        "cohort_false_rejection": round(refused / len(records), 4) if records else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("cohort_dir")
    parser.add_argument("labels_csv")
    parser.add_argument("output_dir")
    parser.add_argument("--models-dir")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--label", action="append", dest="labels", help="evaluate only these")
    args = parser.parse_args(argv)
    summary = evaluate_model(
        args.model,
        args.cohort_dir,
        args.labels_csv,
        args.output_dir,
        models_dir=args.models_dir,
        device=args.device,
        labels=args.labels,
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
