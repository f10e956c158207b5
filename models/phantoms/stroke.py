"""Generated acute ischemic stroke studies: non-contrast head CT and diffusion MRI (pure).

The infarct is a wedge of one middle cerebral artery territory: one hemisphere, an angular
sector of the lateral brain from the Sylvian region, from a depth inward to the cortex, over a
range of heights. On non-contrast CT it is early ischemic change: grey-white differentiation
lost, the territory at 17-22 HU (white matter 29, cortex 38); some strokes also show the dense
vessel sign, a 65-80 HU middle cerebral artery segment near the skull base. On MRI the
diffusion series holds b=0 and b=1000 images (Diffusion b-value in the header, as on the
scanner) and a separate derived ADC map (x 10^-6 mm2/s): the infarct is bright at b=1000 and
dark on ADC. The true infarct volume is recorded in mL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence
from scipy import ndimage

from models.labels import DENSE_VESSEL_SIGN, ISCHEMIC_STROKE
from models.phantoms.base import PhantomStudy, phantom_uid, rng_for, study_info
from models.phantoms.dicom import (
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    TransferSyntaxName,
    base_dataset,
    ct_modules,
    encode,
    mr_modules,
    sequence_item,
    set_pixels,
)
from models.phantoms.head_ct import INTERCEPT, make_skull, render_slices

CT_KIND = "head-ct-stroke"
MR_KIND = "brain-mri-stroke"
BITS_STORED = 12


@dataclass(frozen=True)
class Territory:
    side: int  # +1: patient left (+x), -1: patient right
    centre_angle: float  # radians from the lateral axis (negative: anterior)
    half_width: float  # radians
    inner: float  # fraction of the hemisphere's half-width where the wedge starts
    z_range: tuple[float, float]  # mm
    dense_vessel: bool


def make_territory(rng: np.random.Generator, *, dense_vessel_chance: float = 0.6) -> Territory:
    low = rng.uniform(-20, 0)
    return Territory(
        side=int(rng.choice([-1, 1])),
        centre_angle=rng.uniform(-0.45, 0.45),
        half_width=rng.uniform(0.3, 0.75),
        inner=rng.uniform(0.25, 0.6),
        z_range=(low, low + rng.uniform(20, 45)),
        dense_vessel=bool(rng.random() < dense_vessel_chance),
    )


def territory_mask(
    territory: Territory, dx: np.ndarray, dy: np.ndarray, z: float, brain: np.ndarray
) -> np.ndarray:
    """The wedge on one slice (``dx``/``dy`` in mm from the head centre)."""
    if not territory.z_range[0] <= z <= territory.z_range[1]:
        return np.zeros_like(brain)
    lateral = territory.side * dx
    angle = np.arctan2(dy, np.maximum(lateral, 1e-3))
    half_width = np.where(brain, np.abs(dx), 0).max(initial=1.0)
    return (
        brain
        & (lateral > territory.inner * half_width)
        & (np.abs(angle - territory.centre_angle) < territory.half_width)
    )


def vessel_mask(territory: Territory, dx: np.ndarray, dy: np.ndarray, z: float) -> np.ndarray:
    """The M1 segment: a 3 mm tube from 6 to 34 mm lateral of the midline, 6 mm anterior."""
    if not territory.dense_vessel or abs(z - (territory.z_range[0] + 2.0)) > 3.0:
        return np.zeros(dx.shape, dtype=bool)
    lateral = territory.side * dx
    return (lateral > 6) & (lateral < 34) & (np.abs(dy + 6) < 1.6)


def _slab(rng: np.random.Generator, slices: int, spacing: float, around: Territory | None) -> float:
    if around is not None:
        target = float(np.mean(around.z_range))
        return target - rng.uniform(0.25, 0.75) * (slices - 1) * spacing
    return 96.0 - (slices - 1) * spacing


def head_ct_stroke_study(
    seed: int,
    stroke: bool = False,
    *,
    dense_vessel: bool | None = None,
    slices: int = 40,
    spacing_mm: float = 4.0,
    matrix: int = 256,
    field_of_view_mm: float = 230.0,
    around_stroke: bool = False,
    first_z: float | None = None,
    patient_id: str | None = None,
    accession_number: str | None = None,
    transfer_syntax: TransferSyntaxName = "explicit",
) -> PhantomStudy:
    """A non-contrast axial head CT; with ``stroke``, a hypodense MCA territory."""
    rng = rng_for(CT_KIND, seed)
    skull = make_skull(rng, ())
    territory = make_territory(rng) if stroke else None
    if territory is not None and dense_vessel is not None:
        territory = Territory(**{**territory.__dict__, "dense_vessel": dense_vessel})
    if first_z is None:
        first_z = _slab(rng, slices, spacing_mm, territory if around_stroke else None)
    z_positions = first_z + np.arange(slices) * spacing_mm
    pixel = field_of_view_mm / matrix
    volume, _ = render_slices(skull, z_positions, matrix, pixel, rng)
    coordinates = (np.arange(matrix) - (matrix - 1) / 2) * pixel
    xx, yy = np.meshgrid(coordinates, coordinates)
    dx, dy = xx - skull.centre[0], yy - skull.centre[1]
    infarct = np.zeros(volume.shape, dtype=bool)
    vessel = np.zeros(volume.shape, dtype=bool)
    if territory is not None:
        for index, z in enumerate(z_positions):
            plane = volume[index]
            brain = (plane > 20) & (plane < 50) & _cavity(plane)
            infarct[index] = territory_mask(territory, dx, dy, float(z), brain)
            plane[infarct[index]] = rng.uniform(17, 22) + rng.normal(
                0, 4.0, int(infarct[index].sum())
            )
            vessel[index] = vessel_mask(territory, dx, dy, float(z)) & _cavity(plane)
            plane[vessel[index]] = rng.uniform(65, 80)
    labels = set()
    if infarct.any():
        labels.add(ISCHEMIC_STROKE)
    if vessel.any():
        labels.add(DENSE_VESSEL_SIGN)
    info = study_info(
        CT_KIND,
        seed,
        description="CT HEAD WITHOUT CONTRAST",
        patient_id=patient_id,
        accession_number=accession_number,
    )
    study = PhantomStudy(CT_KIND, [], frozenset(labels))
    study.measurements["infarct_volume_ml"] = float(
        infarct.sum() * pixel * pixel * spacing_mm / 1000.0
    )
    if territory is not None:
        study.measurements["side"] = float(territory.side)
    series_uid = phantom_uid(CT_KIND, seed, "series")
    frame_of_reference = phantom_uid(CT_KIND, seed, "frame-of-reference")
    origin = -(matrix - 1) / 2 * pixel
    stored = np.clip(np.rint(volume - INTERCEPT), 0, 2**BITS_STORED - 1).astype(np.uint16)
    for index in range(slices):
        ds = base_dataset(
            info,
            sop_class_uid=CT_IMAGE_STORAGE,
            sop_instance_uid=phantom_uid(CT_KIND, seed, "slice", index),
            series_instance_uid=series_uid,
            modality="CT",
            series_number=2,
            instance_number=index + 1,
            series_description="HEAD AXIAL 4MM",
            body_part="HEAD",
        )
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ct_modules(
            ds, frame_of_reference_uid=frame_of_reference, kvp=120, rescale_intercept=INTERCEPT
        )
        ds.WindowCenter = 40
        ds.WindowWidth = 80
        _place(ds, origin, float(z_positions[index]), pixel, spacing_mm)
        set_pixels(ds, stored[index], bits_stored=BITS_STORED)
        encode(ds, transfer_syntax)
        study.datasets.append(ds)
        key = (str(ds.SOPInstanceUID), None)
        study.add_mask(ISCHEMIC_STROKE, key, infarct[index])
        study.add_mask(DENSE_VESSEL_SIGN, key, vessel[index])
    return study


def _cavity(plane: np.ndarray) -> np.ndarray:
    bone = plane > 300
    return ndimage.binary_fill_holes(bone) & ~bone


def _place(ds: Dataset, origin: float, z: float, pixel: float, spacing: float) -> None:
    ds.ImagePositionPatient = [origin, origin, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [pixel, pixel]
    ds.SliceThickness = spacing
    ds.SliceLocation = z


# MR intensities: (b=0, b=1000, ADC x 10^-6 mm2/s)
MR_TISSUE = {
    "brain": (900.0, 330.0, 800.0),
    "csf": (1800.0, 40.0, 3000.0),
    "infarct": (1150.0, 900.0, 420.0),
    "scalp": (500.0, 30.0, 0.0),
}


def brain_mri_stroke_study(
    seed: int,
    stroke: bool = False,
    *,
    slices: int = 24,
    spacing_mm: float = 5.0,
    matrix: int = 128,
    field_of_view_mm: float = 230.0,
    around_stroke: bool = False,
    b_value_tag: str = "standard",
    adc: bool = True,
    patient_id: str | None = None,
    accession_number: str | None = None,
    transfer_syntax: TransferSyntaxName = "explicit",
) -> PhantomStudy:
    """Axial diffusion MRI: one DWI series (b=0 and b=1000 images) and one ADC series.

    ``b_value_tag``: where the b-value is written: ``standard`` (0018,9087), ``sequence``
    (MR Diffusion Sequence), ``siemens`` (0019,100C) or ``ge`` (0043,1039). The series
    descriptions are deliberately uninformative ("SEQ 5", "SEQ 6").
    """
    rng = rng_for(MR_KIND, seed)
    territory = make_territory(rng, dense_vessel_chance=0.0) if stroke else None
    semi = (rng.uniform(66, 74), rng.uniform(84, 92), rng.uniform(88, 96))
    first_z = (
        _slab(rng, slices, spacing_mm, territory)
        if around_stroke and territory is not None
        else -(slices - 1) * spacing_mm / 2
    )
    z_positions = first_z + np.arange(slices) * spacing_mm
    pixel = field_of_view_mm / matrix
    coordinates = (np.arange(matrix) - (matrix - 1) / 2) * pixel
    dx, dy = np.meshgrid(coordinates, coordinates)
    images = np.zeros((3, slices, matrix, matrix), dtype=np.float32)
    infarct = np.zeros((slices, matrix, matrix), dtype=bool)
    for index, z in enumerate(z_positions):
        radial = np.sqrt((dx / semi[0]) ** 2 + (dy / semi[1]) ** 2 + (float(z) / semi[2]) ** 2)
        head = radial < 1.0
        brain = radial < 0.88
        ventricles = np.zeros_like(brain)
        for side in (-1, 1):
            ventricles |= ((dx - side * 8) / 6) ** 2 + ((dy + 2) / 26) ** 2 + (
                (float(z) - 14) / 14
            ) ** 2 < 1
        csf = head & ~brain & (radial < 0.92) | (ventricles & brain)
        tissue = brain & ~ventricles
        if territory is not None:
            infarct[index] = territory_mask(territory, dx, dy, float(z), tissue)
        for channel in range(3):
            plane = images[channel, index]
            plane[head] = MR_TISSUE["scalp"][channel]
            plane[csf] = MR_TISSUE["csf"][channel]
            plane[tissue] = MR_TISSUE["brain"][channel]
            plane[infarct[index]] = MR_TISSUE["infarct"][channel]
    gain = rng.uniform(0.8, 1.25)
    images[:2] *= gain
    images[0] += rng.normal(0, 25, images[0].shape).astype(np.float32)
    images[1] += rng.normal(0, 20, images[1].shape).astype(np.float32)
    images[2] += rng.normal(0, 40, images[2].shape).astype(np.float32) * (images[2] > 0)
    stored = np.clip(np.rint(images), 0, 2**BITS_STORED - 1).astype(np.uint16)
    info = study_info(
        MR_KIND,
        seed,
        description="MR BRAIN STROKE PROTOCOL",
        patient_id=patient_id,
        accession_number=accession_number,
    )
    study = PhantomStudy(MR_KIND, [], frozenset({ISCHEMIC_STROKE} if infarct.any() else set()))
    study.measurements["infarct_volume_ml"] = float(
        infarct.sum() * pixel * pixel * spacing_mm / 1000.0
    )
    frame_of_reference = phantom_uid(MR_KIND, seed, "frame-of-reference")
    origin = -(matrix - 1) / 2 * pixel
    dwi_series = phantom_uid(MR_KIND, seed, "dwi-series")
    adc_series = phantom_uid(MR_KIND, seed, "adc-series")
    number = 0
    for b_value, channel in ((0, 0), (1000, 1), (None, 2)):
        if b_value is None and not adc:
            continue
        for index in range(slices):
            number += 1
            ds = base_dataset(
                info,
                sop_class_uid=MR_IMAGE_STORAGE,
                sop_instance_uid=phantom_uid(MR_KIND, seed, "image", channel, index),
                series_instance_uid=adc_series if b_value is None else dwi_series,
                modality="MR",
                series_number=6 if b_value is None else 5,
                instance_number=number,
                series_description="SEQ 6" if b_value is None else "SEQ 5",
                body_part="BRAIN",
            )
            mr_modules(ds, frame_of_reference_uid=frame_of_reference, echo_train_length=64)
            ds.ScanningSequence = "EP"
            ds.SequenceVariant = "SK"
            ds.MRAcquisitionType = "2D"
            ds.RepetitionTime = 5200.0
            ds.EchoTime = 78.0
            ds.MagneticFieldStrength = 1.5
            if b_value is None:
                ds.ImageType = ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]
            else:
                ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]
                _write_b_value(ds, b_value, b_value_tag)
            _place(ds, origin, float(z_positions[index]), pixel, spacing_mm)
            ds.SpacingBetweenSlices = spacing_mm
            set_pixels(ds, stored[channel, index], bits_stored=BITS_STORED)
            encode(ds, transfer_syntax)
            study.datasets.append(ds)
            study.add_mask(ISCHEMIC_STROKE, (str(ds.SOPInstanceUID), None), infarct[index])
    return study


def _write_b_value(ds: Dataset, b_value: int, where: str) -> None:
    if where == "standard":
        ds.DiffusionBValue = float(b_value)
    elif where == "sequence":
        ds.MRDiffusionSequence = DicomSequence([sequence_item(DiffusionBValue=float(b_value))])
    elif where == "siemens":
        ds.Manufacturer = "SIEMENS"
        ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0C, "IS", b_value)
    elif where == "ge":
        ds.Manufacturer = "GE MEDICAL SYSTEMS"
        block = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
        block.add_new(0x39, "IS", [1_000_000_000 + b_value, 0, 0, 0])
    else:
        raise ValueError(f"unknown b-value tag placement {where!r}")
