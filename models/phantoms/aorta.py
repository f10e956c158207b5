"""Generated CT angiography of the thoracic aorta, with and without dissection (pure).

Axial slices from the aortic root to the diaphragm, in Hounsfield units: body wall and fat,
lungs, the heart (unenhanced myocardium), the spine, and the contrast-filled aorta (280-380 HU):
the ascending aorta anterior-right, the arch joining it to the descending aorta over the top
slices, the descending aorta left of the spine. Aortas vary in diameter (22-48 mm ascending).
A dissection is an intimal flap (a 3 mm, 50 HU line across the lumen) with a slightly less
enhanced false lumen: Stanford type A involves the ascending aorta (and usually the arch and
descending aorta), type B only the descending aorta. The true maximum diameter is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.labels import AORTIC_DISSECTION, STANFORD_TYPE_A, STANFORD_TYPE_B
from models.phantoms.base import PhantomStudy, phantom_uid, rng_for, study_info
from models.phantoms.dicom import (
    CT_IMAGE_STORAGE,
    TransferSyntaxName,
    base_dataset,
    ct_modules,
    encode,
    set_pixels,
)

KIND = "cta-aortic-dissection"
INTERCEPT = -1024.0
BITS_STORED = 12
FLAP_HU = 50.0
FALSE_LUMEN = 0.65  # the false lumen enhances less than the true one
ARCH_Z = 60.0  # mm: the top of the arch; the root is near z = 0


@dataclass(frozen=True)
class Aorta:
    ascending_diameter: float  # mm
    descending_diameter: float  # mm
    ascending_centre: tuple[float, float]
    descending_centre: tuple[float, float]
    contrast: float  # HU
    stanford: str | None  # "A", "B" or None
    flap_angle: float  # radians
    flap_offset: float  # fraction of the radius
    flap_low_z: float  # the dissection extends down to here in the descending aorta


def make_aorta(rng: np.random.Generator, stanford: str | None) -> Aorta:
    widened = stanford is not None and rng.random() < 0.6
    ascending = rng.uniform(36, 48) if widened else rng.uniform(22, 40)
    return Aorta(
        ascending_diameter=ascending,
        descending_diameter=min(ascending * rng.uniform(0.7, 0.9), 38.0),
        ascending_centre=(rng.uniform(-22, -14), rng.uniform(-48, -38)),
        descending_centre=(rng.uniform(14, 22), rng.uniform(22, 30)),
        contrast=rng.uniform(280, 380),
        stanford=stanford,
        flap_angle=rng.uniform(0, np.pi),
        flap_offset=rng.uniform(-0.3, 0.3),
        flap_low_z=rng.uniform(-160, -60),
    )


def _lumen(
    xx: np.ndarray,
    yy: np.ndarray,
    centre: tuple[float, float],
    diameter: float,
    flap: tuple[float, float] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lumen, false lumen, flap) masks of a round vessel; ``flap`` = (angle, offset)."""
    radius = diameter / 2
    distance = np.hypot(xx - centre[0], yy - centre[1])
    lumen = distance < radius
    if flap is None:
        none = np.zeros_like(lumen)
        return lumen, none, none
    angle, offset = flap
    signed = (xx - centre[0]) * np.cos(angle) + (yy - centre[1]) * np.sin(angle) - offset * radius
    line = lumen & (np.abs(signed) < 1.5) & (distance < radius - 1.0)
    return lumen, lumen & (signed > 1.5), line


def cta_aorta_study(
    seed: int,
    stanford: str | None = None,
    *,
    slices: int = 32,
    spacing_mm: float = 6.0,
    matrix: int = 128,
    field_of_view_mm: float = 320.0,
    top_z: float = 75.0,
    patient_id: str | None = None,
    accession_number: str | None = None,
    transfer_syntax: TransferSyntaxName = "explicit",
) -> PhantomStudy:
    """A CTA of the thoracic aorta; ``stanford`` "A", "B" or None (no dissection)."""
    if stanford not in (None, "A", "B"):
        raise ValueError(f"stanford must be 'A', 'B' or None, not {stanford!r}")
    rng = rng_for(KIND, seed)
    aorta = make_aorta(rng, stanford)
    z_positions = top_z - np.arange(slices)[::-1] * spacing_mm  # ascending z
    pixel = field_of_view_mm / matrix
    coordinates = (np.arange(matrix) - (matrix - 1) / 2) * pixel
    xx, yy = np.meshgrid(coordinates, coordinates)
    volume = np.full((slices, matrix, matrix), -1000.0, dtype=np.float32)
    flap_any = np.zeros(volume.shape, dtype=bool)
    flap_ascending = np.zeros(volume.shape, dtype=bool)
    flap_descending = np.zeros(volume.shape, dtype=bool)
    body = (xx / 150) ** 2 + (yy / 110) ** 2 < 1
    flap = (aorta.flap_angle, aorta.flap_offset)
    for index, z in enumerate(z_positions):
        plane = volume[index]
        plane[body] = -100.0  # fat
        plane[body & ((xx / 140) ** 2 + (yy / 100) ** 2 > 1)] = 40.0  # body wall
        for side in (-1, 1):
            lung = ((xx - side * 65) / 50) ** 2 + ((yy + 5) / 75) ** 2 < 1
            plane[lung] = -850.0
        spine = np.hypot(xx, yy - 55) < 18
        plane[spine] = 700.0
        plane[np.hypot(xx, yy - 55) < 12] = 250.0  # cancellous bone
        if z < 0:
            heart = ((xx + 10) / 55) ** 2 + ((yy + 20) / 45) ** 2 < 1
            plane[heart] = 45.0
        wall = 40.0
        vessels = []
        descending_flap = aorta.stanford is not None and z > aorta.flap_low_z
        ascending_flap = aorta.stanford == "A"
        if 0 <= z <= ARCH_Z - 10:
            vessels.append((aorta.ascending_centre, aorta.ascending_diameter, ascending_flap, True))
        if z <= ARCH_Z:
            vessels.append(
                (aorta.descending_centre, aorta.descending_diameter, descending_flap, False)
            )
        for centre, diameter, dissected, ascending in vessels:
            ring = np.hypot(xx - centre[0], yy - centre[1]) < diameter / 2 + 1.5
            plane[ring] = wall
            lumen, false_lumen, line = _lumen(xx, yy, centre, diameter, flap if dissected else None)
            plane[lumen] = aorta.contrast
            plane[false_lumen] = aorta.contrast * FALSE_LUMEN
            plane[line] = FLAP_HU
            (flap_ascending if ascending else flap_descending)[index] |= line
        if ARCH_Z - 10 < z <= ARCH_Z:  # the arch: a tube from the ascending to the descending
            start = np.array(aorta.ascending_centre)
            end = np.array(aorta.descending_centre)
            direction = (end - start) / np.linalg.norm(end - start)
            along = (xx - start[0]) * direction[0] + (yy - start[1]) * direction[1]
            across = -(xx - start[0]) * direction[1] + (yy - start[1]) * direction[0]
            length = float(np.linalg.norm(end - start))
            radius = aorta.ascending_diameter / 2 * 0.9
            tube = (along > 0) & (along < length) & (np.abs(across) < radius)
            plane[tube & (np.abs(across) > radius - 1.5)] = wall
            arch = tube & (np.abs(across) < radius - 1.5)
            plane[arch] = aorta.contrast
            if ascending_flap:
                line = arch & (np.abs(across - aorta.flap_offset * radius) < 1.5)
                plane[arch & (across > aorta.flap_offset * radius + 1.5)] = (
                    aorta.contrast * FALSE_LUMEN
                )
                plane[line] = FLAP_HU
                flap_ascending[index] |= line
        flap_any[index] = flap_ascending[index] | flap_descending[index]
    volume += rng.normal(0.0, 12.0, volume.shape).astype(np.float32)
    labels = set()
    if flap_any.any():
        labels.add(AORTIC_DISSECTION)
        labels.add(STANFORD_TYPE_A if flap_ascending.any() else STANFORD_TYPE_B)
    info = study_info(
        KIND,
        seed,
        description="CTA AORTA",
        patient_id=patient_id,
        accession_number=accession_number,
    )
    study = PhantomStudy(KIND, [], frozenset(labels))
    in_range = [
        aorta.ascending_diameter if (z_positions <= ARCH_Z - 10).any() else 0.0,
        aorta.descending_diameter,
    ]
    study.measurements["max_aortic_diameter_mm"] = float(max(in_range))
    series_uid = phantom_uid(KIND, seed, "series")
    frame_of_reference = phantom_uid(KIND, seed, "frame-of-reference")
    origin = -(matrix - 1) / 2 * pixel
    stored = np.clip(np.rint(volume - INTERCEPT), 0, 2**BITS_STORED - 1).astype(np.uint16)
    for index in range(slices):
        ds = base_dataset(
            info,
            sop_class_uid=CT_IMAGE_STORAGE,
            sop_instance_uid=phantom_uid(KIND, seed, "slice", index),
            series_instance_uid=series_uid,
            modality="CT",
            series_number=3,
            instance_number=slices - index,
            series_description="CTA AORTA ARTERIAL",
            body_part="CHEST",
        )
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ProtocolName = "CTA AORTA"
        ds.ContrastBolusAgent = "IOHEXOL"
        ct_modules(
            ds, frame_of_reference_uid=frame_of_reference, kvp=100, rescale_intercept=INTERCEPT
        )
        ds.WindowCenter = 300
        ds.WindowWidth = 600
        ds.ImagePositionPatient = [origin, origin, float(z_positions[index])]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [pixel, pixel]
        ds.SliceThickness = spacing_mm
        ds.SliceLocation = float(z_positions[index])
        set_pixels(ds, stored[index], bits_stored=BITS_STORED)
        encode(ds, transfer_syntax)
        study.datasets.append(ds)
        key = (str(ds.SOPInstanceUID), None)
        study.add_mask(AORTIC_DISSECTION, key, flap_any[index])
        study.add_mask(STANFORD_TYPE_A, key, flap_ascending[index])
        study.add_mask(STANFORD_TYPE_B, key, flap_descending[index])
    return study
