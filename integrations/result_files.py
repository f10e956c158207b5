"""Analysis results and built result objects on disk, beside the spool (I/O).

Tasks pass paths, never arrays: an analysis is ``<results>/<study>/<generation>/<analyzer>.json``
with its heatmaps in a ``.npz`` next to it; built DICOM objects are ``.dcm`` files in the same
folder, named by their SOP Instance UID.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from pydicom import Dataset

from integrations.dicom.uids import validate_uid
from models.results import AnalysisResult


def study_results_dir(results_dir: Path, study_instance_uid: str, generation: int) -> Path:
    return (
        results_dir / validate_uid(study_instance_uid, "Study Instance UID") / f"g{int(generation)}"
    )


def _atomic_write(path: Path, write) -> None:  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def save_analysis(folder: Path, result: AnalysisResult) -> Path:
    """Write the result JSON (and heatmaps when there are any); return the JSON path."""
    name = result.analyzer.replace("/", "_")
    json_path = folder / f"{name}.json"
    if result.heatmaps:
        arrays = {
            f"heatmap_{i}": heatmap.values.astype(np.float32)
            for i, heatmap in enumerate(result.heatmaps)
        }
        _atomic_write(folder / f"{name}.npz", lambda handle: np.savez(handle, **arrays))  # type: ignore[arg-type]
    payload = json.dumps(result.to_json(), indent=1, sort_keys=True).encode("utf-8")
    _atomic_write(json_path, lambda handle: handle.write(payload))
    return json_path


def load_analysis(json_path: Path) -> AnalysisResult:
    data = json.loads(json_path.read_text(encoding="utf-8"))
    arrays: list[np.ndarray] = []
    npz_path = json_path.with_suffix(".npz")
    if data.get("heatmaps") and npz_path.exists():
        with np.load(npz_path) as archive:
            arrays = [archive[f"heatmap_{i}"] for i in range(len(data["heatmaps"]))]
    return AnalysisResult.from_json(data, arrays)


def save_dataset(folder: Path, dataset: Dataset) -> Path:
    path = folder / f"{validate_uid(dataset.SOPInstanceUID, 'SOP Instance UID')}.dcm"
    _atomic_write(path, lambda handle: dataset.save_as(handle, enforce_file_format=True))
    return path
