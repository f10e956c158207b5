"""Chest radiograph analyzer: 18 findings plus tension pneumothorax, with Grad-CAM (pure).

Takes CR/DX instances; keeps frontal views (PA, AP: View Position, else the View Code
Sequence, else the series description) and skips lateral, oblique and decubitus views with a
reason. Each frame goes through the image's own VOI LUT / window and MONOCHROME1 inversion
(what the radiologist sees), a centre square crop and a resize to the network's input. A
study's probability per label is the highest over its frontal images; each positive finding
references the images at or above the threshold and gets a Grad-CAM heatmap on its most
probable image, at that image's full resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import ClassVar

import numpy as np
from pydicom import Dataset

from models.analyzers.base import (
    BaseAnalyzer,
    Skipped,
    label_probabilities,
    nothing_to_analyse,
)
from models.analyzers.radiograph import PreparedImage, prepare_radiograph
from models.labels import CHEST_CORE_LABELS
from models.preprocess import NotAnalysable, describe, image_reference
from models.results import AnalysisResult, Heatmap

FRONTAL_VIEWS = ("PA", "AP")
_VIEW_WORDS = {
    "LL": "lateral",
    "RL": "lateral",
    "LATERAL": "lateral",
    "LAT": "lateral",
    "RLO": "oblique",
    "LLO": "oblique",
    "RAO": "oblique",
    "LAO": "oblique",
    "RLD": "decubitus",
    "LLD": "decubitus",
}


def view_of(dataset: Dataset) -> str | None:
    """The projection: View Position, else View Code Sequence meaning, else series text."""
    position = str(dataset.get("ViewPosition", "") or "").strip().upper()
    if position:
        return position
    codes = dataset.get("ViewCodeSequence")
    if codes:
        meaning = str(codes[0].get("CodeMeaning", "")).lower()
        for word, view in (
            ("postero-anterior", "PA"),
            ("posteroanterior", "PA"),
            ("antero-posterior", "AP"),
            ("anteroposterior", "AP"),
            ("lateral", "LATERAL"),
            ("oblique", "RLO"),
            ("decubitus", "RLD"),
        ):
            if word in meaning:
                return view
    text = " ".join(
        str(dataset.get(keyword, "") or "") for keyword in ("SeriesDescription", "ProtocolName")
    ).upper()
    for token in text.replace("/", " ").replace("_", " ").split():
        if token in ("PA", "AP", "LAT", "LATERAL", "LL", "RL"):
            return token
    return None


def view_problem(dataset: Dataset, allowed: Sequence[str]) -> str | None:
    view = view_of(dataset)
    if view is None or view in allowed:
        return None
    kind = _VIEW_WORDS.get(view, "non-frontal")
    return (
        f"{describe(image_reference(dataset))}: {kind} view (View Position {view}) is not "
        f"analysed; the model reads frontal views ({', '.join(allowed)})"
    )


class ChestXrayAnalyzer(BaseAnalyzer):
    kind: ClassVar[str] = "chest-xray"
    required_labels: ClassVar[tuple[str, ...]] = CHEST_CORE_LABELS

    def select(self, datasets: Sequence[Dataset]) -> tuple[list[PreparedImage], list[Skipped]]:
        images: list[PreparedImage] = []
        skipped: list[Skipped] = []
        allowed = tuple(self.manifest.views) or FRONTAL_VIEWS
        for dataset in datasets:
            problem = self.header_problem(dataset) or view_problem(dataset, allowed)
            if problem is not None:
                skipped.append(Skipped(image_reference(dataset), problem))
                continue
            try:
                images.extend(prepare_radiograph(dataset, self.manifest.input))
            except NotAnalysable as reason:
                skipped.append(Skipped(image_reference(dataset), reason.reason))
        return images, skipped

    def _analyze(self, datasets: list[Dataset]) -> AnalysisResult:
        images, skipped = self.select(datasets)
        if not images:
            raise nothing_to_analyse("frontal chest radiograph", skipped)
        inputs = np.stack([image.inputs for image in images])
        per_label = label_probabilities(self.manifest, self.logits(inputs))

        findings = []
        positives = []
        for label in self.manifest.labels:
            values = per_label[label.name]
            best = int(np.argmax(values))
            probability = float(values[best])
            above = [images[i].reference for i in np.flatnonzero(values >= label.threshold)]
            finding = self.finding(label, probability, above or [images[best].reference])
            findings.append(finding)
            if finding.present and label.output_index is not None:
                positives.append((label, best))

        heatmaps = []
        for index in sorted({best for _, best in positives}):
            labels = [label for label, best in positives if best == index]
            maps = self.gradcam(inputs[index : index + 1], labels)
            for label in labels:
                heatmaps.append(
                    Heatmap(
                        label=label.name,
                        image=images[index].reference,
                        values=images[index].geometry.to_image(maps[label.name][0]),
                    )
                )
        return self.analysed(
            findings,
            heatmaps,
            [image.reference for image in images],
            {
                "images": [
                    {
                        "image": asdict(image.reference),
                        "probabilities": {
                            name: round(float(values[i]), 6) for name, values in per_label.items()
                        },
                    }
                    for i, image in enumerate(images)
                ],
                "skipped": [item.to_json() for item in skipped],
            },
        )
