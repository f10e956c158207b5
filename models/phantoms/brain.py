"""Generated contrast-enhanced T1 brain MRI series with enhancing tumours and masks (pure).

The head is an analytic solid (scalp fat, skull, CSF rim, cortex and white matter, lateral
ventricles) sampled on any set of axial slices, so a 200-slice series and a short training
slab come from the same model. A tumour is a sphere-like mass with an enhancing rim around a
necrotic core (or solid enhancement when small) inside a rim of vasogenic oedema. A smooth
bias field and noise vary per patient. Series are classic MR Image Storage slices (optionally
in shuffled order, so slice order must come from Image Position (Patient)) or one Enhanced MR
multi-frame object with per-frame positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence

from models.labels import BRAIN_TUMOR as LABEL
from models.phantoms.base import PhantomStudy, phantom_uid, rng_for, study_info
from models.phantoms.dicom import (
    ENHANCED_MR_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    TransferSyntaxName,
    base_dataset,
    encode,
    enhanced_mr_modules,
    frame_functional_groups,
    mr_modules,
    sequence_item,
    set_pixels,
)

KIND = "brain-mri-tumor"
BITS_STORED = 12
MAX_STORED = 2**BITS_STORED - 1


@dataclass(frozen=True)
class Head:
    """One patient's head (mm, patient coordinates: x left, y posterior, z superior)."""

    semi_axes: tuple[float, float, float]
    centre: tuple[float, float, float]
    tumour: tuple[float, float, float, float] | None  # x, y, z, radius
    necrotic: bool
    bias: tuple[float, float, float]
    gain: float
    sulcus_phase: tuple[float, float]


def make_head(rng: np.random.Generator, tumour: bool) -> Head:
    semi_axes = (rng.uniform(68, 76), rng.uniform(86, 96), rng.uniform(88, 98))
    centre = (rng.uniform(-4, 4), rng.uniform(-4, 4), rng.uniform(-6, 6))
    lesion = None
    if tumour:
        radius = rng.uniform(7, 17)
        while True:  # inside the brain, clear of the ventricles
            position = rng.uniform(-1, 1, 3) * np.array(semi_axes) * 0.55
            if abs(position[0]) > 18 or abs(position[2] - 10) > 22:
                break
        lesion = (
            float(position[0] + centre[0]),
            float(position[1] + centre[1]),
            float(position[2] + centre[2]),
            float(radius),
        )
    return Head(
        semi_axes=semi_axes,
        centre=centre,
        tumour=lesion,
        necrotic=bool(lesion is not None and lesion[3] > 9 and rng.random() < 0.8),
        bias=(rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), rng.uniform(-0.08, 0.08)),
        gain=rng.uniform(0.85, 1.15),
        sulcus_phase=(rng.uniform(0, 6.3), rng.uniform(0, 6.3)),
    )


def render_slices(
    head: Head,
    z_positions: np.ndarray,
    rows: int,
    columns: int,
    spacing: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Stored values (slices x rows x cols, uint16) and tumour masks at the given z (mm)."""
    x = (np.arange(columns) - (columns - 1) / 2) * spacing
    y = (np.arange(rows) - (rows - 1) / 2) * spacing
    xx, yy = np.meshgrid(x, y)
    images = np.zeros((len(z_positions), rows, columns), dtype=np.float32)
    masks = np.zeros((len(z_positions), rows, columns), dtype=bool)
    a, b, c = head.semi_axes
    cx, cy, cz = head.centre
    for index, z in enumerate(z_positions):
        dx, dy, dz = xx - cx, yy - cy, float(z) - cz
        radial = np.sqrt((dx / a) ** 2 + (dy / b) ** 2 + (dz / c) ** 2)
        scale = (a + b + c) / 3
        depth = (1.0 - radial) * scale  # mm inside the head surface (approximately)
        image = np.zeros((rows, columns), dtype=np.float32)
        image[depth > 0] = 900.0  # scalp fat
        image[depth > 5] = 80.0  # skull
        image[depth > 11] = 130.0  # CSF rim
        brain = depth > 13
        angle = np.arctan2(dy, dx)
        sulci = np.sin(9 * angle + head.sulcus_phase[0] + 0.15 * dz) * np.sin(
            7 * np.arctan2(dz, np.hypot(dx, dy) + 1e-3) + head.sulcus_phase[1]
        )
        cortex = brain & (depth < 17 + 2.5 * sulci)
        image[brain] = 620.0  # white matter
        image[cortex] = 480.0  # grey matter
        image[brain & (depth < 14.5) & (sulci > 0.55)] = 140.0  # CSF in sulci
        for side in (-1, 1):
            ventricle = ((dx - side * 9) / 6) ** 2 + ((dy + 4) / 24) ** 2 + (
                (dz - 12) / 13
            ) ** 2 < 1
            image[ventricle & brain] = 130.0
        if head.tumour is not None:
            tx, ty, tz, radius = head.tumour
            distance = np.sqrt((xx - tx) ** 2 + (yy - ty) ** 2 + (float(z) - tz) ** 2)
            oedema = brain & (distance < radius * 1.6)
            image[oedema] = np.minimum(image[oedema], 440.0)
            lesion = brain & (distance < radius)
            image[lesion] = 1150.0
            if head.necrotic:
                image[brain & (distance < radius - rng.uniform(2.0, 3.5))] = 260.0
            masks[index] = lesion
        field = 1 + head.bias[0] * dx / a + head.bias[1] * dy / b + head.bias[2] * dz / c
        image = image * field * head.gain
        images[index] = image
    images += rng.normal(0.0, 14.0, images.shape).astype(np.float32)
    stored = np.clip(np.rint(images), 0, MAX_STORED).astype(np.uint16)
    return stored, masks


def _mr_common(ds: Dataset) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = ["SP", "MP"]
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "3D"
    ds.RepetitionTime = 8.1
    ds.EchoTime = 3.7
    ds.MagneticFieldStrength = 3.0
    ds.ImagingFrequency = 127.7
    ds.ContrastBolusAgent = "GADOBUTROL"
    ds.ProtocolName = "T1 MPRAGE POST"


def brain_mri_study(
    seed: int,
    tumour: bool = False,
    *,
    slices: int = 200,
    spacing_mm: float = 1.0,
    matrix: int = 192,
    field_of_view_mm: float = 240.0,
    first_z: float | None = None,
    around_tumour: bool = False,
    multiframe: bool = False,
    shuffle: bool = False,
    patient_id: str | None = None,
    accession_number: str | None = None,
    transfer_syntax: TransferSyntaxName = "explicit",
) -> PhantomStudy:
    """A post-contrast T1 axial series of ``slices`` slices (``spacing_mm`` apart).

    By default the slices are centred on the head; ``first_z`` places the lowest slice and
    ``around_tumour`` places a short slab across the tumour (training slabs).
    """
    rng = rng_for(KIND, seed)
    head = make_head(rng, tumour)
    if around_tumour and head.tumour is not None:  # a short slab that cuts through the lesion
        first_z = head.tumour[2] - rng.uniform(0.2, 0.8) * (slices - 1) * spacing_mm
    if first_z is None:
        first_z = -(slices - 1) * spacing_mm / 2
    z_positions = first_z + np.arange(slices) * spacing_mm
    pixel = field_of_view_mm / matrix
    stored, masks = render_slices(head, z_positions, matrix, matrix, pixel, rng)
    info = study_info(
        KIND,
        seed,
        description="MR BRAIN WITH CONTRAST",
        patient_id=patient_id,
        accession_number=accession_number,
    )
    study = PhantomStudy(KIND, [], frozenset({LABEL} if tumour else set()))
    origin_x = -(matrix - 1) / 2 * pixel
    origin_y = -(matrix - 1) / 2 * pixel
    series_uid = phantom_uid(KIND, seed, "series")
    frame_of_reference = phantom_uid(KIND, seed, "frame-of-reference")
    window = (600.0 * head.gain, 1400.0 * head.gain)
    if multiframe:
        ds = base_dataset(
            info,
            sop_class_uid=ENHANCED_MR_IMAGE_STORAGE,
            sop_instance_uid=phantom_uid(KIND, seed, "multiframe"),
            series_instance_uid=series_uid,
            modality="MR",
            series_number=3,
            instance_number=1,
            series_description="T1 MPRAGE AX POST",
            body_part="BRAIN",
        )
        _mr_common(ds)
        ds.FrameOfReferenceUID = frame_of_reference
        order = rng.permutation(slices) if shuffle else np.arange(slices)
        set_pixels(ds, stored[order], bits_stored=BITS_STORED)
        shared = Dataset()
        shared.PixelMeasuresSequence = DicomSequence(
            [sequence_item(PixelSpacing=[pixel, pixel], SliceThickness=spacing_mm)]
        )
        shared.PlaneOrientationSequence = DicomSequence(
            [sequence_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]
        )
        shared.FrameVOILUTSequence = DicomSequence(
            [sequence_item(WindowCenter=window[0], WindowWidth=window[1])]
        )
        ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
        ds.PerFrameFunctionalGroupsSequence = frame_functional_groups(
            [(origin_x, origin_y, float(z_positions[i])) for i in order]
        )
        enhanced_mr_modules(
            ds,
            body_part="BRAIN",
            acquisition_datetime=info.study_date + info.study_time,
            dimension_organization_uid=phantom_uid(KIND, seed, "dimension-organization"),
        )
        encode(ds, transfer_syntax)
        study.datasets.append(ds)
        for frame, index in enumerate(order):
            study.add_mask(LABEL, (str(ds.SOPInstanceUID), frame + 1), masks[index])
        return study
    order = rng.permutation(slices) if shuffle else np.arange(slices)
    for position, index in enumerate(order):
        ds = base_dataset(
            info,
            sop_class_uid=MR_IMAGE_STORAGE,
            sop_instance_uid=phantom_uid(KIND, seed, "slice", int(index)),
            series_instance_uid=series_uid,
            modality="MR",
            series_number=3,
            # with shuffle, Instance Number disagrees with the anatomy on purpose
            instance_number=position + 1 if shuffle else int(index) + 1,
            series_description="T1 MPRAGE AX POST",
            body_part="BRAIN",
        )
        _mr_common(ds)
        mr_modules(ds, frame_of_reference_uid=frame_of_reference)
        ds.ImagePositionPatient = [origin_x, origin_y, float(z_positions[index])]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [pixel, pixel]
        ds.SliceThickness = spacing_mm
        ds.SpacingBetweenSlices = spacing_mm
        ds.SliceLocation = float(z_positions[index])
        ds.WindowCenter = round(window[0], 1)
        ds.WindowWidth = round(window[1], 1)
        set_pixels(ds, stored[index], bits_stored=BITS_STORED)
        encode(ds, transfer_syntax)
        study.datasets.append(ds)
        study.add_mask(LABEL, (str(ds.SOPInstanceUID), None), masks[index])
    return study
