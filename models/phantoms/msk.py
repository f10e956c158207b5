"""Generated musculoskeletal radiographs with fractures and their masks (pure).

Extremities (forearm, wrist, leg, ankle, humerus, femur, hand) are drawn as one or two long
bones with a cortex, a medullary cavity and flared joint ends inside a soft-tissue envelope;
some patients are skeletally immature and show a physis (a growth plate is not a fracture).
A fracture is a cortical break across one bone, transverse or oblique, with a gap and a
displaced, slightly angulated distal fragment. Spines (cervical, thoracic, lumbar; lateral
view) are a column of vertebral bodies with end plates and discs; a fracture is an anterior
wedge compression of one body. A study has an AP and a lateral image of the same part.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydicom import Dataset
from scipy import ndimage

from models.phantoms.base import PhantomStudy, StudyInfo, grid, phantom_uid, rng_for, study_info
from models.phantoms.dicom import (
    DX_IMAGE_FOR_PRESENTATION,
    TransferSyntaxName,
    base_dataset,
    encode,
    radiograph_modules,
    set_pixels,
)

KIND = "msk-fracture"
EXTREMITIES = ("FOREARM", "WRIST", "HAND", "LEG", "ANKLE", "HUMERUS", "FEMUR")
SPINES = ("CSPINE", "TSPINE", "LSPINE")
BODY_PARTS = EXTREMITIES + SPINES
VIEW_CODES = {  # DICOM CID 4010 "DX View"
    "AP": ("399348003", "antero-posterior"),
    "LAT": ("399173006", "left lateral"),
}
PAIRED = {"FOREARM", "WRIST", "HAND", "LEG", "ANKLE"}  # two parallel bones
BITS_STORED = 12
MAX_STORED = 2**BITS_STORED - 1
FIELD_MM = 240.0


def _bone_profile(distance: np.ndarray, radius: np.ndarray | float, cortex: float) -> np.ndarray:
    """Projected density across a tubular bone: bright cortex, dimmer medulla."""
    outer = np.sqrt(np.clip(radius**2 - distance**2, 0.0, None))
    inner_radius = np.maximum(radius - cortex, np.asarray(radius) * 0.35)
    inner = np.sqrt(np.clip(inner_radius**2 - distance**2, 0.0, None))
    return (outer - 0.55 * inner) / radius


def _draw_extremity(
    size: int, rng: np.random.Generator, body_part: str, fractured: bool, lateral_view: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    x, y = grid(size, size)
    angle = math.radians(rng.uniform(-12, 12))
    # rotate coordinates so bones run along v (down the image), u across
    u = (x - 0.5) * math.cos(angle) - (y - 0.5) * math.sin(angle)
    v = (x - 0.5) * math.sin(angle) + (y - 0.5) * math.cos(angle)
    limb_half = rng.uniform(0.2, 0.28)
    soft = np.clip(1 - (u / limb_half) ** 2, 0, None) ** 0.5
    image = 0.06 + 0.3 * soft
    paired = body_part in PAIRED and not (lateral_view and rng.random() < 0.5)
    centres = [-0.055, 0.055] if paired else [0.0]
    radius_scale = 0.6 if paired else 1.0
    bones = np.zeros_like(image)
    masks = np.zeros(image.shape, dtype=bool)
    broken = int(rng.integers(0, len(centres)))
    fracture_v = rng.uniform(-0.22, 0.22)
    fracture_tilt = math.radians(rng.uniform(-40, 40)) if rng.random() < 0.6 else 0.0
    gap = rng.uniform(0.009, 0.016)
    shift = rng.uniform(0.008, 0.025) * rng.choice([-1, 1])
    bend = math.radians(rng.uniform(-6, 6))
    physis = rng.random() < 0.3
    for index, centre in enumerate(centres):
        radius = rng.uniform(0.045, 0.065) * radius_scale
        cortex = radius * rng.uniform(0.25, 0.4)
        flare = 1.0 + 0.7 * np.exp(-(((np.abs(v) - 0.42) / 0.07) ** 2))  # joint ends
        local_u = u - centre
        local_v = v
        line = None
        if fractured and index == broken:
            # signed distance to the fracture line through (centre, fracture_v)
            line = (local_v - fracture_v) * math.cos(fracture_tilt) - local_u * math.sin(
                fracture_tilt
            )
            distal = line > 0
            local_u = np.where(
                distal, local_u - shift - (local_v - fracture_v) * math.tan(bend), local_u
            )
        density = _bone_profile(local_u, radius * flare, cortex) * (np.abs(v) < 0.49)
        if physis:
            plate = np.abs(np.abs(local_v) - 0.36) < 0.006
            density = np.where(plate, density * 0.45, density)
        if line is not None:
            in_gap = np.abs(line) < gap / 2
            density = np.where(in_gap, density * 0.12, density)
            masks |= (np.abs(line) < 0.03) & (_bone_profile(u - centre, radius * flare, cortex) > 0)
        bones += density
    image = image + 0.55 * bones
    return image, (masks if fractured else None)


def _draw_spine(
    size: int, rng: np.random.Generator, fractured: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    x, y = grid(size, size)
    angle = math.radians(rng.uniform(-8, 8))
    u = (x - 0.5) * math.cos(angle) - (y - 0.5) * math.sin(angle)
    v = (x - 0.5) * math.sin(angle) + (y - 0.5) * math.cos(angle)
    image = 0.1 + 0.28 * np.clip(1 - (u / 0.42) ** 2, 0, None)
    height = rng.uniform(0.1, 0.13)
    disc = height * rng.uniform(0.22, 0.3)
    width = rng.uniform(0.16, 0.2)
    count = 7
    start = -(count * (height + disc)) / 2
    broken = int(rng.integers(1, count - 1))
    mask = np.zeros(image.shape, dtype=bool)
    for index in range(count):
        top = start + index * (height + disc)
        centre = top + height / 2
        half_height = np.full_like(u, height / 2)
        if fractured and index == broken:
            loss = rng.uniform(0.3, 0.5)
            # anterior (left, u < 0) edge loses height linearly: a wedge compression
            fraction = np.clip((u + width / 2) / width, 0, 1)
            half_height = half_height * (1 - loss * (1 - fraction))
        body = (np.abs(u) < width / 2) & (np.abs(v - centre) < half_height)
        rim = body & ~((np.abs(u) < width / 2 - 0.012) & (np.abs(v - centre) < half_height - 0.012))
        image = image + 0.3 * body + 0.22 * rim
        posterior = (
            (u > width / 2 + 0.01) & (u < width / 2 + 0.09) & (np.abs(v - centre) < height * 0.3)
        )
        image = image + 0.2 * posterior
        if fractured and index == broken:
            sclerosis = body & (np.abs(v - (centre - half_height + 0.015)) < 0.008)
            image = image + 0.15 * sclerosis
            mask = ndimage.binary_dilation(body, iterations=2)
    return image, (mask if fractured else None)


def msk_radiograph(
    info: StudyInfo,
    study_seed: int,
    image_index: int,
    body_part: str,
    fractured: bool,
    *,
    view: str,
    photometric: str = "MONOCHROME2",
    transfer_syntax: TransferSyntaxName = "explicit",
    size: int = 384,
) -> tuple[Dataset, np.ndarray | None]:
    rng = rng_for(KIND, study_seed * 100 + image_index)
    if body_part in SPINES:
        image, mask = _draw_spine(size, rng, fractured)
    else:
        image, mask = _draw_extremity(size, rng, body_part, fractured, view == "LAT")
    image = ndimage.gaussian_filter(image, sigma=max(size / 500, 0.5))
    image = image + rng.normal(0, 0.01, image.shape)
    image = np.clip(image, 0, 1) ** rng.uniform(0.85, 1.15)
    stored = np.clip(np.rint(image * (MAX_STORED - 200) + 100), 0, MAX_STORED).astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = (MAX_STORED - stored).astype(np.uint16)
    ds = base_dataset(
        info,
        sop_class_uid=DX_IMAGE_FOR_PRESENTATION,
        sop_instance_uid=phantom_uid(KIND, study_seed, "image", image_index),
        series_instance_uid=phantom_uid(KIND, study_seed, "series"),
        modality="DX",
        series_number=1,
        instance_number=image_index + 1,
        series_description=f"{body_part} {view}",
        body_part=body_part,
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    radiograph_modules(
        ds,
        body_part=body_part,
        view_position="LL" if view == "LAT" else "AP",
        view_code=VIEW_CODES["LAT" if view == "LAT" else "AP"],
        image_laterality="U" if body_part in SPINES else ("L" if study_seed % 2 else "R"),
        photometric=photometric,
        positioner_type="NONE",
    )
    ds.ImagerPixelSpacing = [FIELD_MM / size, FIELD_MM / size]
    ds.PatientOrientation = ["L", "F"]
    set_pixels(ds, stored, bits_stored=BITS_STORED, photometric=photometric)
    center = rng.uniform(0.46, 0.54) * MAX_STORED
    if photometric == "MONOCHROME1":
        center = MAX_STORED - center
    ds.WindowCenter = round(center, 1)
    ds.WindowWidth = round(rng.uniform(0.9, 1.05) * MAX_STORED, 1)
    encode(ds, transfer_syntax)
    return ds, mask


def msk_study(
    seed: int,
    fracture: bool = False,
    *,
    body_part: str | None = None,
    views: Sequence[str] = ("AP", "LAT"),
    patient_id: str | None = None,
    accession_number: str | None = None,
    photometric: str = "MONOCHROME2",
    transfer_syntax: TransferSyntaxName = "explicit",
    size: int = 384,
) -> PhantomStudy:
    """An extremity or spine radiograph study (AP + lateral), with or without a fracture."""
    rng = rng_for(KIND, seed)
    part = body_part or str(rng.choice(np.array(BODY_PARTS)))
    if part not in BODY_PARTS:
        raise ValueError(f"unknown body part {part!r}; known: {', '.join(BODY_PARTS)}")
    info = study_info(
        KIND,
        seed,
        description=f"XR {part}",
        patient_id=patient_id,
        accession_number=accession_number,
    )
    study = PhantomStudy(KIND, [], frozenset({"Fracture"} if fracture else set()))
    for index, view in enumerate(views):
        ds, mask = msk_radiograph(
            info,
            seed,
            index,
            part,
            fracture,
            view=view,
            photometric=photometric,
            transfer_syntax=transfer_syntax,
            size=size,
        )
        study.datasets.append(ds)
        if mask is not None:
            study.add_mask("Fracture", (str(ds.SOPInstanceUID), None), mask)
    return study
