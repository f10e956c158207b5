"""The input digest of a result: everything that decides a result object's content (pure).

A SOP Instance UID must never name two different contents, and a rerun that would produce
the same content should produce the same UID (so the PACS, which keeps the first copy of a
known UID, already has it). Result UIDs therefore derive from a digest over:

* the model (name, version, weights digest) and the analyzer;
* what the analysis concluded, with every threshold and urgency tier the site's rules gave
  each finding, and the heatmaps (so a changed urgency rule or threshold is a new input);
* the source images (their SOP Instance UIDs: a late image is a new input);
* the site's output profile (carriers, series numbers, captions, contour levels ...);
* for the SR only, the prior used for comparison (its outcome, or "none"): the overlays do
  not show the prior, so a new prior changes the SR but not the overlays.

Wall-clock times and inference durations are not inputs: they change on every run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from pydicom import Dataset

from integrations.settings import ResultsSettings
from models.interval_change import PriorComparison
from models.results import AnalysisResult

# Bump when a builder change alters the bytes produced for the same inputs.
BUILDER_REVISION: Final = "pacsflow-results-2"
NO_PRIOR: Final = "none"
_NOT_INPUTS: Final = ("inference_seconds",)


def _sha256(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def analysis_digest(analysis: AnalysisResult) -> str:
    """What the analysis concluded, heatmap values included, without run-time measurements."""
    data = analysis.to_json()
    for key in _NOT_INPUTS:
        data.pop(key, None)
    hasher = hashlib.sha256(_sha256(data).encode("ascii"))
    for heatmap in analysis.heatmaps:
        values = np.ascontiguousarray(np.asarray(heatmap.values, dtype=np.float32))
        hasher.update(str(values.shape).encode("ascii"))
        hasher.update(values.tobytes())
    return hasher.hexdigest()


def source_uids(sources: Sequence[Dataset]) -> list[str]:
    return sorted({str(source.get("SOPInstanceUID", "")) for source in sources})


def overlay_inputs_digest(
    analysis: AnalysisResult, sources: Sequence[Dataset], profile: ResultsSettings
) -> str:
    """The digest every overlay carrier's UIDs derive from."""
    return _sha256(
        {
            "revision": BUILDER_REVISION,
            "analyzer": analysis.analyzer,
            "model": analysis.model.algorithm_uid_seed,
            "analysis": analysis_digest(analysis),
            "sources": source_uids(sources),
            "profile": profile.model_dump(mode="json"),
        }
    )


def prior_input(prior: PriorComparison | None) -> Any:
    """The prior as an input: the comparison outcome (prior UID, changes) or "none"."""
    return NO_PRIOR if prior is None else prior.to_json()


def report_inputs_digest(overlay_digest: str, prior: PriorComparison | None) -> str:
    """The SR's digest: the overlays' inputs and the prior used."""
    return _sha256({"overlays": overlay_digest, "prior": prior_input(prior)})
