"""The model flows as Prefect runs against a real (test) server: evaluate-model, train-demo-models."""

from __future__ import annotations

import json
from pathlib import Path

from flows.evaluate_model import evaluate_model
from flows.train_demo_models import train_demo_models
from models.cohort import write_phantom_cohort
from models.loading import read_manifest
from models.phantoms.aorta import cta_aorta_study
from models.phantoms.chest import chest_xray_study
from tests.fix_prefect import flow_runs


def test_evaluate_model_reports_json_and_html(
    prefect_api_url: str, demo_models_dir: Path, tmp_path: Path
) -> None:
    studies = [
        chest_xray_study(9_300_000 + index, {"Pneumothorax"} if index % 2 == 0 else set(), size=256)
        for index in range(16)
    ]
    studies.append(chest_xray_study(9_300_100, (), views=("LATERAL",), size=128))
    labels_csv = write_phantom_cohort(tmp_path / "cohort", studies)
    summary = evaluate_model(
        "chest-xray",
        str(tmp_path / "cohort"),
        str(labels_csv),
        str(tmp_path / "report"),
        models_dir=str(demo_models_dir),
        device="cpu",
        labels=["Pneumothorax"],
    )
    document = json.loads(Path(summary["json"]).read_text())
    assert document["cohort"]["studies_evaluated"] == 16
    assert document["cohort"]["not_analysable"] == 1
    assert "lateral view" in document["not_analysable"][0]["reason"]
    (pneumothorax,) = document["labels"]
    assert pneumothorax["positives"] == 8 and pneumothorax["negatives"] == 8
    matrix = pneumothorax["confusion"]
    assert sum(matrix.values()) == 16
    assert (
        0.0 <= pneumothorax["auc_ci"][0] <= pneumothorax["auc"] <= pneumothorax["auc_ci"][1] <= 1.0
    )
    assert (
        document["model"]["weights_sha256"]
        == read_manifest(demo_models_dir / "chest-xray").weights.sha256
    )
    domain = document["domain"]
    assert domain["declared"] and domain["cohort_refused"] == 0 and domain["cohort_studies"] == 17
    calibration = domain["calibration"]
    assert {"in_domain_false_rejection", "ood_detection", "score_auc"} <= set(calibration)
    page = Path(summary["html"]).read_text()
    assert "<svg" in page and "Pneumothorax" in page
    assert "Input-domain gate" in page and "out-of-domain detection" in page
    runs = flow_runs(prefect_api_url, "evaluate-model")
    assert any(run["state_type"] == "COMPLETED" for run in runs)


def test_train_demo_models_flow_writes_a_loadable_package(
    prefect_api_url: str, tmp_path: Path
) -> None:
    (result,) = train_demo_models(["msk-fracture"], str(tmp_path), scale=0.01)
    manifest = read_manifest(Path(result["path"]))
    assert manifest.name == "msk-fracture" and manifest.is_demo and not manifest.clinical_use
    assert result["sha256"] == manifest.weights.sha256
    assert set(result["held_out_auc"]) == {"Fracture"}
    assert manifest.domain is not None and manifest.domain.unit == "image"
    (refit,) = train_demo_models(["msk-fracture"], str(tmp_path), scale=0.01, fit_domain_only=True)
    assert read_manifest(Path(refit["path"])).weights.sha256 == manifest.weights.sha256
    assert refit["calibration"]["ood_detection"] is not None


def test_evaluate_model_scores_the_dissection_labels(
    prefect_api_url: str, demo_models_dir: Path, tmp_path: Path
) -> None:
    studies = [
        cta_aorta_study(9_820_000 + index, stanford, slices=20)
        for index, stanford in enumerate(("A", "B", None, "A", "B", None))
    ]
    labels_csv = write_phantom_cohort(tmp_path / "cohort", studies)
    summary = evaluate_model(
        "cta-aortic-dissection",
        str(tmp_path / "cohort"),
        str(labels_csv),
        str(tmp_path / "report"),
        models_dir=str(demo_models_dir),
        device="cpu",
    )
    document = json.loads(Path(summary["json"]).read_text())
    assert document["cohort"]["studies_evaluated"] == 6
    by_name = {label["label"]: label for label in document["labels"]}
    assert by_name["Aortic dissection"]["positives"] == 4
    assert by_name["Stanford type A aortic dissection"]["positives"] == 2
    assert by_name["Stanford type B aortic dissection"]["positives"] == 2
    assert by_name["Stanford type A aortic dissection"]["auc"] >= 0.9
