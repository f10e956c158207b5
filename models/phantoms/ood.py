"""Generated images an analyzer was not trained on, in its own headers (pure).

Each generator takes an in-domain phantom study's datasets and returns copies whose pixels are
something else, keeping modality, body part, view and geometry, so that only the image
content (what the domain gate reads) is wrong, never a header the analyzer already refuses:

- ``noise``: uniform random values;
- ``other_body_part``: another analyzer's anatomy (a limb radiograph for the chest model, a
  chest radiograph for the fracture model, a chest CT for the head CT model, a head CT's
  densities as an MR series for the brain MR model);
- ``inverted``: the MONOCHROME1 mistake (for radiographs the photometric interpretation
  flipped, so the viewer's inversion is wrong; for series the stored values inverted);
- ``foreign_object``: a uniform field holding a large metal object;
- ``plain_dark_fields``: a plain grey field with two dark ellipses, roughly where lungs would
  be (not one of the project's phantoms: the issue's "Enlarged cardiomediastinum 100 %").
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
from pydicom import Dataset

from models.phantoms.chest import chest_xray_study
from models.phantoms.dicom import set_pixels
from models.phantoms.head_ct import head_ct_study
from models.phantoms.msk import msk_study

OodGenerator = Callable[[Sequence[Dataset], np.random.Generator], list[Dataset]]
_VOI_KEYWORDS = ("VOILUTSequence", "WindowCenter", "WindowWidth", "VOILUTFunction")
HU_OFFSET = 1024.0  # every CT phantom stores HU + 1024


def _planes(ds: Dataset) -> np.ndarray:
    array = ds.pixel_array
    return array[None] if array.ndim == 2 else array


def with_pixels(ds: Dataset, values: np.ndarray, *, keep_voi: bool = False) -> Dataset:
    """A copy of ``ds`` whose pixels are ``values`` in [0, 1] of its stored range."""
    out = copy.deepcopy(ds)
    maximum = 2 ** int(ds.BitsStored) - 1
    stored = np.round(np.clip(values, 0.0, 1.0) * maximum).astype(np.uint16)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    stored = stored.reshape(frames, int(ds.Rows), int(ds.Columns))
    if not keep_voi and str(ds.Modality) not in ("CT", "MR"):
        for keyword in _VOI_KEYWORDS:
            if keyword in out:
                delattr(out, keyword)
    set_pixels(
        out,
        stored if frames > 1 else stored[0],
        bits_stored=int(ds.BitsStored),
        photometric=str(ds.PhotometricInterpretation),
    )
    return out


def _shape(ds: Dataset) -> tuple[int, int, int]:
    return int(ds.get("NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns)


def _resize(image: np.ndarray, rows: int, columns: int) -> np.ndarray:
    y = np.linspace(0, image.shape[0] - 1, rows).round().astype(int)
    x = np.linspace(0, image.shape[1] - 1, columns).round().astype(int)
    return image[np.ix_(y, x)]


def _centred_grid(rows: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates in -1..1."""
    y = np.linspace(-1.0, 1.0, rows)[:, None] * np.ones((1, columns))
    x = np.ones((rows, 1)) * np.linspace(-1.0, 1.0, columns)[None, :]
    return y, x


def _hu(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Hounsfield units as [0, 1] of a CT phantom's stored range."""
    return (values + HU_OFFSET) / (2 ** int(ds.BitsStored) - 1)


def noise(datasets: Sequence[Dataset], rng: np.random.Generator) -> list[Dataset]:
    return [with_pixels(ds, rng.uniform(0.0, 1.0, _shape(ds))) for ds in datasets]


def inverted(datasets: Sequence[Dataset], rng: np.random.Generator) -> list[Dataset]:
    out = []
    for ds in datasets:
        if str(ds.Modality) in ("CT", "MR"):
            maximum = 2 ** int(ds.BitsStored) - 1
            out.append(with_pixels(ds, 1.0 - _planes(ds) / maximum))
        else:
            flipped = copy.deepcopy(ds)
            flipped.PhotometricInterpretation = (
                "MONOCHROME2" if ds.PhotometricInterpretation == "MONOCHROME1" else "MONOCHROME1"
            )
            if "PresentationLUTShape" in flipped:  # DX: follows the photometric interpretation
                flipped.PresentationLUTShape = (
                    "INVERSE" if flipped.PhotometricInterpretation == "MONOCHROME1" else "IDENTITY"
                )
            out.append(flipped)
    return out


def foreign_object(datasets: Sequence[Dataset], rng: np.random.Generator) -> list[Dataset]:
    out = []
    for ds in datasets:
        frames, rows, columns = _shape(ds)
        y, x = _centred_grid(rows, columns)
        angle = rng.uniform(0, np.pi)
        u = x * np.cos(angle) + y * np.sin(angle)
        v = -x * np.sin(angle) + y * np.cos(angle)
        metal = ((np.abs(u) < 0.6) & (np.abs(v) < 0.12)) | (
            np.abs(np.hypot(u - 0.6, v) - 0.25) < 0.07
        )
        if str(ds.Modality) == "CT":
            water = np.hypot(x, y) < 0.85
            plane = _hu(np.where(metal, 3000.0, np.where(water, 0.0, -1000.0)), ds)
        else:
            plane = np.where(metal, 0.97, 0.35 + 0.02 * rng.standard_normal((rows, columns)))
        out.append(with_pixels(ds, np.broadcast_to(plane, (frames, rows, columns))))
    return out


def plain_dark_fields(datasets: Sequence[Dataset], rng: np.random.Generator) -> list[Dataset]:
    out = []
    for ds in datasets:
        frames, rows, columns = _shape(ds)
        y, x = _centred_grid(rows, columns)
        spread = rng.uniform(0.35, 0.5)
        fields = np.zeros((rows, columns), bool)
        for side in (-1, 1):
            fields |= ((x - side * spread) / 0.28) ** 2 + ((y + 0.05) / 0.55) ** 2 < 1.0
        if str(ds.Modality) == "CT":
            body = (x / 0.9) ** 2 + (y / 0.7) ** 2 < 1.0
            plane = _hu(np.where(fields, -850.0, np.where(body, 40.0, -1000.0)), ds)
        else:
            plane = np.where(fields, 0.15, 0.6)
        plane = plane + 0.01 * rng.standard_normal((rows, columns))
        out.append(with_pixels(ds, np.broadcast_to(plane, (frames, rows, columns))))
    return out


def other_body_part(datasets: Sequence[Dataset], rng: np.random.Generator) -> list[Dataset]:
    seed = int(rng.integers(1, 1_000_000))
    out = []
    modality = str(datasets[0].Modality)
    body_part = str(datasets[0].get("BodyPartExamined", "")).upper()
    if modality == "CT":
        return plain_dark_fields(datasets, rng)  # an axial chest CT: body, two lungs
    if modality == "MR":
        head = head_ct_study(seed, (), slices=len(datasets), matrix=int(datasets[0].Rows))
        planes = np.concatenate([_planes(ds) for ds in head.datasets]).astype(np.float64)
        return [
            with_pixels(ds, np.clip(planes[i % len(planes)] / 4095.0, 0, 1)[None])
            for i, ds in enumerate(datasets)
        ]
    for index, ds in enumerate(datasets):
        _, rows, columns = _shape(ds)
        if body_part == "CHEST":
            limb = msk_study(seed + index, False, views=("AP",), size=max(rows, columns))
            image = limb.datasets[0].pixel_array.astype(np.float64) / 4095.0
        else:
            chest = chest_xray_study(seed + index, (), size=max(rows, columns))
            image = chest.datasets[0].pixel_array.astype(np.float64) / 4095.0
        out.append(with_pixels(ds, _resize(image, rows, columns)[None]))
    return out


GENERATORS: dict[str, OodGenerator] = {
    "noise": noise,
    "other_body_part": other_body_part,
    "inverted_monochrome1": inverted,
    "foreign_object": foreign_object,
    "plain_dark_fields": plain_dark_fields,
}
