"""Generated non-contrast head CT series with intracranial haemorrhage and masks (pure).

Hounsfield units throughout: scalp, skull (outer and inner tables, diploe), a thin CSF space,
cortex and white matter with CSF-filled sulci, lateral ventricles, a skull base with petrous
bone and an air sinus on low slices, and (in some patients) a calcified pineal gland, which
is dense but is not blood. Haemorrhage (acute blood, 60-85 HU) comes in the five types a
reader names: epidural (biconvex lens against the inner table), subdural (a wide crescent
along the convexity), subarachnoid (blood in the sulci of a region and in the basal
cisterns), intraparenchymal (an oval clot with an oedema rim) and intraventricular (blood
layering in the dependent, posterior ventricles). The true blood volume is recorded in mL.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset

from models.labels import ANY_HEMORRHAGE as ANY
from models.labels import HEMORRHAGE_SUBTYPES as SUBTYPES
from models.labels import MIXED_HEMORRHAGE as MIXED
from models.phantoms.base import PhantomStudy, StudyInfo, phantom_uid, rng_for, study_info
from models.phantoms.dicom import (
    CT_IMAGE_STORAGE,
    TransferSyntaxName,
    base_dataset,
    ct_modules,
    encode,
    set_pixels,
)

KIND = "head-ct-ich"
INTERCEPT = -1024.0
BITS_STORED = 12


@dataclass(frozen=True)
class Bleed:
    kind: str
    direction: tuple[float, float, float]  # unit vector from the head centre (convexity bleeds)
    extent: float  # angular half-width (radians) or radius (mm)
    thickness: float  # mm
    centre: tuple[float, float, float]  # mm (intraparenchymal)
    density: float  # HU


@dataclass(frozen=True)
class Skull:
    semi_axes: tuple[float, float, float]
    centre: tuple[float, float, float]
    pineal: bool
    bleeds: tuple[Bleed, ...]
    sulcus_phase: tuple[float, float]


def _direction(rng: np.random.Generator) -> tuple[float, float, float]:
    """A point on the upper convexity (not the skull base)."""
    azimuth = rng.uniform(0, 2 * math.pi)
    elevation = rng.uniform(-0.1, 0.75)
    vector = (
        math.cos(elevation) * math.cos(azimuth),
        math.cos(elevation) * math.sin(azimuth),
        math.sin(elevation),
    )
    return vector


def make_skull(rng: np.random.Generator, kinds: Iterable[str]) -> Skull:
    semi_axes = (rng.uniform(68, 76), rng.uniform(86, 94), rng.uniform(90, 98))
    bleeds = []
    for kind in kinds:
        density = rng.uniform(62, 82)
        if kind == "Epidural hemorrhage":
            bleeds.append(
                Bleed(
                    kind,
                    _direction(rng),
                    rng.uniform(0.22, 0.36),
                    rng.uniform(9, 17),
                    (0, 0, 0),
                    density,
                )
            )
        elif kind == "Subdural hemorrhage":
            bleeds.append(
                Bleed(
                    kind,
                    _direction(rng),
                    rng.uniform(0.55, 0.9),
                    rng.uniform(5, 12),
                    (0, 0, 0),
                    density,
                )
            )
        elif kind == "Subarachnoid hemorrhage":
            bleeds.append(
                Bleed(
                    kind,
                    _direction(rng),
                    rng.uniform(0.5, 0.8),
                    4.0,
                    (0, 0, 0),
                    rng.uniform(58, 72),
                )
            )
        elif kind == "Intraparenchymal hemorrhage":
            centre = (
                rng.uniform(-0.45, 0.45) * semi_axes[0],
                rng.uniform(-0.45, 0.45) * semi_axes[1],
                rng.uniform(-0.1, 0.45) * semi_axes[2],
            )
            bleeds.append(Bleed(kind, (0, 0, 1), rng.uniform(8, 18), 0.0, centre, density))
        elif kind == "Intraventricular hemorrhage":
            bleeds.append(
                Bleed(kind, (0, 0, 1), 0.0, rng.uniform(0.3, 0.7), (0, 0, 0), rng.uniform(55, 72))
            )
        else:
            raise ValueError(f"unknown hemorrhage type {kind!r}")
    return Skull(
        semi_axes=semi_axes,
        centre=(rng.uniform(-3, 3), rng.uniform(-3, 3), 0.0),
        pineal=bool(rng.random() < 0.5),
        bleeds=tuple(bleeds),
        sulcus_phase=(rng.uniform(0, 6.3), rng.uniform(0, 6.3)),
    )


def render_slices(
    skull: Skull,
    z_positions: np.ndarray,
    matrix: int,
    pixel: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """HU volume (slices x rows x cols, float32) and a mask per haemorrhage type."""
    coordinates = (np.arange(matrix) - (matrix - 1) / 2) * pixel
    xx, yy = np.meshgrid(coordinates, coordinates)
    volume = np.full((len(z_positions), matrix, matrix), -1000.0, dtype=np.float32)
    masks = {bleed.kind: np.zeros(volume.shape, dtype=bool) for bleed in skull.bleeds}
    a, b, c = skull.semi_axes
    scale = (a + b + c) / 3
    for index, z in enumerate(z_positions):
        dx, dy, dz = xx - skull.centre[0], yy - skull.centre[1], float(z) - skull.centre[2]
        radial = np.sqrt((dx / a) ** 2 + (dy / b) ** 2 + (dz / c) ** 2)
        depth = (1.0 - radial) * scale
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = np.stack([dx / a, dy / b, np.full_like(dx, dz / c)]) / np.maximum(radial, 1e-6)
        image = volume[index]
        image[depth > 0] = 40.0  # scalp
        image[depth > 4] = 1350.0  # outer table
        image[(depth > 6) & (depth < 9)] = 650.0  # diploe
        image[(depth >= 9) & (depth <= 11)] = 1250.0  # inner table
        inside = depth > 11
        image[inside] = 8.0  # CSF space
        brain = depth > 12.5
        angle = np.arctan2(dy, dx)
        sulci = np.sin(10 * angle + skull.sulcus_phase[0] + 0.12 * dz) * np.sin(
            6 * np.arctan2(dz, np.hypot(dx, dy) + 1e-3) + skull.sulcus_phase[1]
        )
        image[brain] = 29.0  # white matter
        image[brain & (depth < 17 + 2 * sulci)] = 38.0  # cortex
        sulcal = brain & (depth < 15) & (sulci > 0.5)
        image[sulcal] = 8.0
        ventricles = np.zeros_like(brain)
        for side in (-1, 1):
            ventricles |= ((dx - side * 8) / 6) ** 2 + ((dy + 2) / 26) ** 2 + (
                (dz - 14) / 14
            ) ** 2 < 1
        ventricles &= brain
        image[ventricles] = 8.0
        if float(z) < -30:  # skull base: petrous bone and a sinus
            for side in (-1, 1):
                petrous = ((dx - side * 30) / 14) ** 2 + ((dy + 8) / 8) ** 2 < 1
                image[petrous & inside] = 900.0
            sinus = (dx / 12) ** 2 + ((dy - 0.75 * b) / 10) ** 2 < 1
            image[sinus & inside] = -900.0
        if skull.pineal:
            pineal = (dx**2 + (dy - 14) ** 2 + (dz - 8) ** 2) < 9
            image[pineal] = 150.0
        cisterns = (
            brain
            & (np.abs(dz + 12) < 6)
            & (np.hypot(dx, dy + 5) > 10)
            & (np.hypot(dx, dy + 5) < 16)
        )
        image[cisterns] = 8.0
        for bleed in skull.bleeds:
            direction = np.asarray(bleed.direction).reshape(3, 1, 1)
            cosine = np.clip((unit * direction).sum(axis=0), -1, 1)
            spread = np.arccos(cosine)
            if bleed.kind in ("Epidural hemorrhage", "Subdural hemorrhage"):
                power = 2 if bleed.kind == "Epidural hemorrhage" else 6
                profile = bleed.thickness * np.clip(1 - (spread / bleed.extent) ** power, 0, None)
                region = inside & (depth > 11) & (depth < 11 + profile)
            elif bleed.kind == "Subarachnoid hemorrhage":
                region = (sulcal & (spread < bleed.extent)) | cisterns
                region |= inside & ~brain & (spread < bleed.extent)
            elif bleed.kind == "Intraparenchymal hemorrhage":
                cx, cy, cz = bleed.centre
                distance = np.sqrt((dx - cx) ** 2 + ((dy - cy) / 1.3) ** 2 + (dz - cz) ** 2)
                oedema = brain & (distance < bleed.extent + 5)
                image[oedema & ~ventricles] = 18.0
                region = brain & (distance < bleed.extent) & ~ventricles
            else:  # intraventricular: dependent (posterior) part of the ventricles
                region = ventricles & (dy > 26 * (1 - 2 * bleed.thickness))
            image[region] = bleed.density
            masks[bleed.kind][index] = region
    volume += rng.normal(0.0, 4.0, volume.shape).astype(np.float32)
    return volume, masks


def head_ct_study(
    seed: int,
    hemorrhages: Iterable[str] = (),
    *,
    slices: int = 40,
    spacing_mm: float = 4.0,
    matrix: int = 256,
    field_of_view_mm: float = 230.0,
    first_z: float | None = None,
    around_bleed: bool = False,
    shuffle: bool = False,
    with_localizer: bool = False,
    contrast: bool = False,
    patient_id: str | None = None,
    accession_number: str | None = None,
    transfer_syntax: TransferSyntaxName = "explicit",
) -> PhantomStudy:
    """A non-contrast axial head CT series; ``hemorrhages`` are names from :data:`SUBTYPES`."""
    kinds = tuple(dict.fromkeys(hemorrhages))
    unknown = [kind for kind in kinds if kind not in SUBTYPES]
    if unknown:
        raise ValueError(f"unknown hemorrhage types {unknown}; known: {', '.join(SUBTYPES)}")
    rng = rng_for(KIND, seed)
    skull = make_skull(rng, kinds)
    if first_z is None:
        first_z = 96.0 - (slices - 1) * spacing_mm  # the vertex downward
    if around_bleed and skull.bleeds:
        bleed = skull.bleeds[0]
        target = (
            bleed.centre[2]
            if bleed.kind == "Intraparenchymal hemorrhage"
            else 14.0
            if bleed.kind == "Intraventricular hemorrhage"
            else bleed.direction[2] * skull.semi_axes[2] * 0.85
        )
        first_z = target - rng.uniform(0.25, 0.75) * (slices - 1) * spacing_mm
    z_positions = first_z + np.arange(slices) * spacing_mm
    pixel = field_of_view_mm / matrix
    volume, masks = render_slices(skull, z_positions, matrix, pixel, rng)
    labels = set(kinds)
    if kinds:
        labels.add(ANY)
    if len(kinds) >= 2:
        labels.add(MIXED)
    info = study_info(
        KIND,
        seed,
        description="CT HEAD WITHOUT CONTRAST",
        patient_id=patient_id,
        accession_number=accession_number,
    )
    study = PhantomStudy(KIND, [], frozenset(labels))
    any_mask = np.zeros(volume.shape, dtype=bool)
    for mask in masks.values():
        any_mask |= mask
    study.measurements["hemorrhage_volume_ml"] = float(
        any_mask.sum() * pixel * pixel * spacing_mm / 1000.0
    )
    series_uid = phantom_uid(KIND, seed, "series")
    frame_of_reference = phantom_uid(KIND, seed, "frame-of-reference")
    origin = -(matrix - 1) / 2 * pixel
    stored = np.clip(np.rint(volume - INTERCEPT), 0, 2**BITS_STORED - 1).astype(np.uint16)
    order = rng.permutation(slices) if shuffle else np.arange(slices)
    for position, index in enumerate(order):
        ds = _ct_slice(
            info,
            seed,
            int(index),
            position,
            series_uid,
            frame_of_reference,
            shuffle=shuffle,
            contrast=contrast,
        )
        ds.ImagePositionPatient = [origin, origin, float(z_positions[index])]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [pixel, pixel]
        ds.SliceThickness = spacing_mm
        ds.SliceLocation = float(z_positions[index])
        set_pixels(ds, stored[index], bits_stored=BITS_STORED)
        encode(ds, transfer_syntax)
        study.datasets.append(ds)
        key = (str(ds.SOPInstanceUID), None)
        for kind, mask in masks.items():
            study.add_mask(kind, key, mask[index])
        study.add_mask(ANY, key, any_mask[index])
        if len(kinds) >= 2:
            study.add_mask(MIXED, key, any_mask[index])
    if with_localizer:
        study.datasets.insert(0, _localizer(info, seed, volume, pixel))
    return study


def _ct_slice(
    info: StudyInfo,
    seed: int,
    index: int,
    position: int,
    series_uid: str,
    frame_of_reference: str,
    *,
    shuffle: bool,
    contrast: bool,
) -> Dataset:
    ds = base_dataset(
        info,
        sop_class_uid=CT_IMAGE_STORAGE,
        sop_instance_uid=phantom_uid(KIND, seed, "slice", index),
        series_instance_uid=series_uid,
        modality="CT",
        series_number=2,
        instance_number=position + 1 if shuffle else index + 1,
        series_description="HEAD AXIAL 4MM" + (" POST CONTRAST" if contrast else ""),
        body_part="HEAD",
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ct_modules(ds, frame_of_reference_uid=frame_of_reference, kvp=120, rescale_intercept=INTERCEPT)
    ds.ConvolutionKernel = "H31s"
    ds.WindowCenter = 40
    ds.WindowWidth = 80
    if contrast:
        ds.ContrastBolusAgent = "IOPAMIDOL"
    return ds


def _localizer(info: StudyInfo, seed: int, volume: np.ndarray, pixel: float) -> Dataset:
    ds = base_dataset(
        info,
        sop_class_uid=CT_IMAGE_STORAGE,
        sop_instance_uid=phantom_uid(KIND, seed, "localizer"),
        series_instance_uid=phantom_uid(KIND, seed, "localizer-series"),
        modality="CT",
        series_number=1,
        instance_number=1,
        series_description="TOPOGRAM",
        body_part="HEAD",
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    projection = np.clip(np.rint(volume.mean(axis=1) + 1024.0), 0, 4095).astype(np.uint16)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    ds.PixelSpacing = [pixel, pixel]
    ds.SliceThickness = ""  # a projection has none
    ct_modules(
        ds,
        frame_of_reference_uid=phantom_uid(KIND, seed, "frame-of-reference"),
        kvp=120,
        rescale_intercept=INTERCEPT,
        localizer=True,
    )
    set_pixels(ds, projection, bits_stored=BITS_STORED)
    return encode(ds)
