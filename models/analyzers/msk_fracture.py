"""Musculoskeletal radiograph fracture analyzer: per image and per study (pure).

Takes CR/DX images of the extremities and the spine; the body part comes from Body Part
Examined and must be one the manifest lists (an image without it, or of another part, is
skipped with the reason). Every view is scored on its own; the study is positive when any
image is, its probability the highest image probability, and the finding references the
images at or above the threshold, each with its own Grad-CAM heatmap.
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
from models.labels import FRACTURE
from models.preprocess import NotAnalysable, describe, image_reference
from models.results import AnalysisResult, Heatmap

MAX_HEATMAPS = 4


class MskFractureAnalyzer(BaseAnalyzer):
    kind: ClassVar[str] = "msk-fracture"
    required_labels: ClassVar[tuple[str, ...]] = (FRACTURE,)

    def select(
        self, datasets: Sequence[Dataset]
    ) -> tuple[list[tuple[PreparedImage, str, str]], list[Skipped]]:
        images: list[tuple[PreparedImage, str, str]] = []
        skipped: list[Skipped] = []
        for dataset in datasets:
            reference = image_reference(dataset)
            body_part = str(dataset.get("BodyPartExamined", "") or "").upper()
            problem = self.header_problem(dataset)
            if problem is None and not body_part:
                problem = (
                    f"{describe(reference)}: Body Part Examined is empty; the fracture model "
                    f"reads {', '.join(self.manifest.body_parts)} and needs to know which"
                )
            if problem is not None:
                skipped.append(Skipped(reference, problem))
                continue
            view = str(dataset.get("ViewPosition", "") or "")
            try:
                images.extend(
                    (image, body_part, view)
                    for image in prepare_radiograph(dataset, self.manifest.input)
                )
            except NotAnalysable as reason:
                skipped.append(Skipped(reference, reason.reason))
        return images, skipped

    def _analyze(self, datasets: list[Dataset]) -> AnalysisResult:
        selected, skipped = self.select(datasets)
        if not selected:
            raise nothing_to_analyse("extremity or spine radiograph", skipped)
        images = [image for image, _, _ in selected]
        inputs = np.stack([image.inputs for image in images])
        label = self.manifest.label(FRACTURE)
        per_image = label_probabilities(self.manifest, self.logits(inputs))[FRACTURE]
        best = int(np.argmax(per_image))
        positive = [int(i) for i in np.argsort(-per_image) if per_image[i] >= label.threshold]
        finding = self.finding(
            label,
            float(per_image[best]),
            [images[i].reference for i in positive] or [images[best].reference],
        )
        heatmaps = []
        for index in positive[:MAX_HEATMAPS]:
            maps = self.gradcam(inputs[index : index + 1], [label])
            heatmaps.append(
                Heatmap(
                    label=FRACTURE,
                    image=images[index].reference,
                    values=images[index].geometry.to_image(maps[FRACTURE][0]),
                )
            )
        return self.analysed(
            [finding],
            heatmaps,
            [image.reference for image in images],
            {
                "images": [
                    {
                        "image": asdict(image.reference),
                        "body_part": body_part,
                        "view": view,
                        "probability": round(float(per_image[i]), 6),
                        "present": bool(per_image[i] >= label.threshold),
                    }
                    for i, (image, body_part, view) in enumerate(selected)
                ],
                "body_parts": sorted({body_part for _, body_part, _ in selected}),
                "skipped": [item.to_json() for item in skipped],
            },
        )
