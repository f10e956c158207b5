"""Generated chest radiographs with anatomically placed findings and their masks (pure).

The PA/AP image is drawn in a canonical frame (x across from the patient's right, y down) and
then moved by a per-seed affine (size, shift, small rotation) so no two patients line up.
Anatomy: body outline and shoulders, two lungs with branching vascular markings, mediastinum
and trachea, heart, spine, posterior ribs, clavicles, diaphragm domes with the gastric bubble.
Findings are what a radiologist looks for: an apical/lateral pneumothorax with a visceral
pleural line and no lung markings beyond it; tension pneumothorax (collapsed lung, mediastinal
shift away, depressed hemidiaphragm); a basal effusion with a meniscus; cardiomegaly (CTR >
0.5); a widened mediastinum; nodule, mass, consolidation with air bronchograms, patchy
pneumonia, hazy infiltrate, plate atelectasis with an elevated hemidiaphragm, bat-wing edema
with Kerley B lines, emphysema (large dark lungs, flat diaphragm), basal reticular fibrosis,
lateral pleural thickening, a retrocardiac hiatal hernia with an air-fluid level, and a rib
fracture with a step. Lateral views are drawn too (for the analyzer to refuse).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydicom import Dataset
from scipy import ndimage

from models.labels import CHEST_LABELS
from models.phantoms.base import (
    PhantomStudy,
    StudyInfo,
    expand_implied,
    grid,
    phantom_uid,
    rng_for,
    segment_distance,
    smoothstep,
    study_info,
)
from models.phantoms.dicom import (
    CR_IMAGE_STORAGE,
    DX_IMAGE_FOR_PRESENTATION,
    TransferSyntaxName,
    base_dataset,
    encode,
    radiograph_modules,
    set_pixels,
    voi_lut_sequence,
)

KIND = "chest-xray"

# Labels the generator draws directly; the others follow from these.
DRAWN_FINDINGS = tuple(name for name in CHEST_LABELS if name not in ("Lung Lesion", "Lung Opacity"))
IMPLICATIONS: dict[str, tuple[str, ...]] = {
    "Tension Pneumothorax": ("Pneumothorax",),
    "Nodule": ("Lung Lesion",),
    "Mass": ("Lung Lesion",),
    "Consolidation": ("Lung Opacity",),
    "Pneumonia": ("Lung Opacity",),
    "Infiltration": ("Lung Opacity",),
    "Atelectasis": ("Lung Opacity",),
    "Edema": ("Lung Opacity",),
    "Cardiomegaly": ("Enlarged Cardiomediastinum",),
}

DETECTOR_MM = 430.0  # a 43 cm detector edge
BITS_STORED = 12
MAX_STORED = 2**BITS_STORED - 1


@dataclass
class _Anatomy:
    heart_half_width: float = 0.155
    heart_center_x: float = 0.545
    mediastinum_shift: float = 0.0
    mediastinum_half_width: float = 0.055
    base_y: dict[str, float] = field(default_factory=lambda: {"right": 0.74, "left": 0.76})
    dome: float = 0.06
    lung_darkening: float = 0.0
    marking_gain: float = 1.0
    lung_scale: float = 1.0


def _side_center(side: str) -> float:
    return 0.315 if side == "right" else 0.685


def _lateral_sign(side: str) -> float:
    return -1.0 if side == "right" else 1.0  # image left is the patient's right


class _Canvas:
    """The canonical-frame coordinate grids of one image and its layers."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.rng = rng
        x, y = grid(size, size)
        scale = rng.uniform(0.93, 1.05)
        angle = math.radians(rng.uniform(-3.0, 3.0))
        shift_x, shift_y = rng.uniform(-0.03, 0.03), rng.uniform(-0.025, 0.025)
        cx, cy = x - 0.5 - shift_x, y - 0.5 - shift_y
        cos, sin = math.cos(angle), math.sin(angle)
        self.x = (cos * cx + sin * cy) / scale + 0.5
        self.y = (-sin * cx + cos * cy) / scale + 0.5
        self.pixel = 1.0 / (size * scale)  # one image pixel in canonical units

    def disk(self, cx: float, cy: float, radius: float) -> np.ndarray:
        return np.hypot(self.x - cx, self.y - cy) < radius


def _lung_shape(canvas: _Canvas, side: str, anatomy: _Anatomy) -> np.ndarray:
    """The hemithorax air space before the mediastinum and heart cut into it."""
    center = _side_center(side)
    apex = 0.13
    half_width = 0.175 * anatomy.lung_scale
    rows = np.clip((canvas.y - apex) / 0.2, 0.0, 1.0)
    width = half_width * np.sqrt(rows)
    lateral = (canvas.x - center) * _lateral_sign(side)
    base = anatomy.base_y[side] + anatomy.dome * (lateral / 0.175 + 1.0) ** 2 / 4.0
    inside = (np.abs(canvas.x - center) <= width) & (canvas.y >= apex) & (canvas.y <= base)
    return inside


def _mediastinum(canvas: _Canvas, anatomy: _Anatomy) -> np.ndarray:
    center = 0.5 + anatomy.mediastinum_shift
    return (
        (np.abs(canvas.x - center) < anatomy.mediastinum_half_width)
        & (canvas.y > 0.07)
        & (canvas.y < 0.62)
    )


def _heart(canvas: _Canvas, anatomy: _Anatomy) -> np.ndarray:
    cx = anatomy.heart_center_x + anatomy.mediastinum_shift
    return ((canvas.x - cx) / anatomy.heart_half_width) ** 2 + (
        (canvas.y - 0.64) / 0.115
    ) ** 2 < 1.0


def _markings(canvas: _Canvas, lungs: dict[str, np.ndarray], anatomy: _Anatomy) -> np.ndarray:
    """Vessels branching out of each hilum, fading toward the periphery."""
    rng = canvas.rng
    splat = np.zeros((canvas.size, canvas.size), dtype=np.float32)
    lines, points = 40, np.linspace(0.0, 1.0, 90)[None, :]
    for side in ("right", "left"):
        hilum_x = 0.5 + _lateral_sign(side) * 0.085 + anatomy.mediastinum_shift
        angle = rng.uniform(-math.pi * 0.55, math.pi * 0.45, (lines, 1))
        if side == "right":
            angle = math.pi - angle
        length = rng.uniform(0.15, 0.33, (lines, 1))
        wiggle = np.cumsum(rng.normal(0.0, 0.02, (lines, points.size)), axis=1)
        px = hilum_x + np.cos(angle + wiggle) * length * points
        py = 0.45 - np.sin(angle + wiggle) * length * points
        weight = np.broadcast_to((1.0 - points) ** 1.2, px.shape)
        columns = np.clip((px * canvas.size).astype(int), 0, canvas.size - 1)
        rows = np.clip((py * canvas.size).astype(int), 0, canvas.size - 1)
        np.add.at(splat, (rows.ravel(), columns.ravel()), weight.ravel())
    # the splat was drawn in unrotated pixel space; resample it into the canvas' frame
    sampled = ndimage.map_coordinates(
        splat,
        [
            np.clip(canvas.y * canvas.size - 0.5, 0, canvas.size - 1),
            np.clip(canvas.x * canvas.size - 0.5, 0, canvas.size - 1),
        ],
        order=1,
    )
    blurred = ndimage.gaussian_filter(sampled, sigma=max(canvas.size / 340.0, 0.6))
    lung = lungs["right"] | lungs["left"]
    peak = float(np.percentile(blurred[lung], 99.5)) if lung.any() else 1.0
    vessels = np.clip(blurred / max(peak, 1e-6), 0.0, 1.0)
    fine = ndimage.gaussian_filter(
        rng.normal(size=blurred.shape).astype(np.float32), canvas.size / 260.0
    )
    fine = np.clip(fine / (fine.std() + 1e-6) - 0.5, 0.0, 2.0) * 0.35
    return np.clip(vessels + fine, 0.0, 1.0) * lung


def _rib_centre(x: np.ndarray, index: int, side: str) -> np.ndarray:
    lateral = np.abs(x - 0.5) / 0.4
    return 0.15 + 0.058 * index - 0.05 + 0.11 * lateral**2


@dataclass
class _Drawing:
    image: np.ndarray
    masks: dict[str, np.ndarray]


def _draw_frontal(size: int, rng: np.random.Generator, findings: frozenset[str]) -> _Drawing:
    canvas = _Canvas(size, rng)
    x, y = canvas.x, canvas.y
    anatomy = _Anatomy()
    side_of = {name: ("right", "left")[int(rng.integers(0, 2))] for name in DRAWN_FINDINGS}
    masks: dict[str, np.ndarray] = {}

    # --- findings that change the anatomy itself
    if "Tension Pneumothorax" in findings:
        side = side_of["Tension Pneumothorax"]
        side_of["Pneumothorax"] = side
        anatomy.mediastinum_shift = -_lateral_sign(side) * rng.uniform(0.045, 0.07)
        anatomy.base_y[side] += rng.uniform(0.04, 0.06)
    if "Cardiomegaly" in findings:
        anatomy.heart_half_width = rng.uniform(0.2, 0.235)
        anatomy.heart_center_x = 0.545
    if "Emphysema" in findings:
        anatomy.base_y = {"right": 0.8, "left": 0.82}
        anatomy.dome = 0.015
        anatomy.lung_darkening = 0.05
        anatomy.marking_gain = 0.4
        anatomy.lung_scale = 1.05
        if "Cardiomegaly" not in findings:
            anatomy.heart_half_width = 0.12
    if "Atelectasis" in findings:
        anatomy.base_y[side_of["Atelectasis"]] -= rng.uniform(0.03, 0.05)
    if "Enlarged Cardiomediastinum" in findings:
        anatomy.mediastinum_half_width = rng.uniform(0.09, 0.115)
    else:
        anatomy.mediastinum_half_width = rng.uniform(0.05, 0.06)

    # --- body and anatomy
    body_half = 0.12 + 0.3 * smoothstep((y - 0.03) / 0.2)
    body = np.abs(x - 0.5) < body_half
    image: np.ndarray = np.where(body, 0.47, 0.04).astype(np.float32)
    image += 0.05 * np.exp(-(((np.abs(x - 0.5) - body_half) / 0.04) ** 2)) * body  # skin fold
    shapes = {side: _lung_shape(canvas, side, anatomy) for side in ("right", "left")}
    mediastinum = _mediastinum(canvas, anatomy)
    heart = _heart(canvas, anatomy)
    lungs = {side: shapes[side] & ~mediastinum & ~heart for side in shapes}
    lung_any = lungs["right"] | lungs["left"]
    image = np.where(lung_any, 0.15 - anatomy.lung_darkening, image)
    image = np.where(heart & body, 0.62, image)
    image = np.where(mediastinum & ~heart, 0.57, image)
    trachea = (np.abs(x - 0.5 - anatomy.mediastinum_shift) < 0.013) & (y > 0.04) & (y < 0.36)
    image = np.where(trachea, image - 0.17, image)
    spine = np.abs(x - 0.5) < 0.036
    discs = 0.5 + 0.5 * np.cos(2 * math.pi * (y - 0.02) / 0.047)
    image += np.where(spine & body, 0.09 + 0.03 * discs, 0.0)
    below = np.zeros_like(lung_any)
    for side in ("right", "left"):
        below |= (np.abs(x - _side_center(side)) < 0.2) & (y > 0.62) & ~shapes[side] & body
    image = np.where(below & ~lung_any & ~heart, np.maximum(image, 0.5), image)
    bubble = ((x - 0.69) / 0.05) ** 2 + ((y - anatomy.base_y["left"] - 0.075) / 0.026) ** 2 < 1
    image = np.where(bubble & ~lung_any, image - 0.2, image)

    markings = _markings(canvas, lungs, anatomy) * anatomy.marking_gain
    pleural_line = np.zeros_like(image)

    # --- ribs and clavicles (bone over everything inside the body)
    fracture_rib = int(rng.integers(3, 8))
    fracture_x = 0.5 + _lateral_sign(side_of["Fracture"]) * rng.uniform(0.22, 0.3)
    bones = np.zeros_like(image)
    for index in range(10):
        centre = _rib_centre(x, index, "both")
        if "Fracture" in findings and index == fracture_rib:
            beyond = (x - fracture_x) * _lateral_sign(side_of["Fracture"]) > 0
            centre = centre + np.where(beyond, 0.013, 0.0)
        rib = np.abs(y - centre) < 0.0075
        rib &= (np.abs(x - 0.5) > 0.03) & (np.abs(x - 0.5) < 0.41) & body
        if "Fracture" in findings and index == fracture_rib:
            rib &= np.abs(x - fracture_x) > 0.01
        bones += rib * 0.1
    for sign in (-1.0, 1.0):
        clavicle = (
            segment_distance(x, y, (0.5 + sign * 0.05, 0.15), (0.5 + sign * 0.31, 0.095)) < 0.011
        )
        bones += clavicle * 0.14
    bones = ndimage.gaussian_filter(bones, sigma=max(size / 420.0, 0.5))
    if "Fracture" in findings:
        centre_y = float(np.mean(_rib_centre(np.array([fracture_x]), fracture_rib, "both")))
        masks["Fracture"] = canvas.disk(fracture_x, centre_y + 0.004, 0.028)

    # --- local findings
    def in_lung(side: str, margin: float, rows: tuple[float, float]) -> tuple[float, float]:
        candidates = np.argwhere(
            ndimage.binary_erosion(lungs[side], iterations=max(1, int(margin * size)))
            & (y > rows[0])
            & (y < rows[1])
        )
        if candidates.size == 0:
            candidates = np.argwhere(lungs[side])
        row, column = candidates[int(rng.integers(0, len(candidates)))]
        return float(x[row, column]), float(y[row, column])

    if "Pneumothorax" in findings:
        side = side_of["Pneumothorax"]
        lung = lungs[side]
        if "Tension Pneumothorax" in findings:
            cx = 0.5 + _lateral_sign(side) * 0.11 + anatomy.mediastinum_shift
            collapsed = ((x - cx) / rng.uniform(0.05, 0.07)) ** 2 + (
                (y - 0.5) / rng.uniform(0.1, 0.14)
            ) ** 2 < 1
            region = lung & ~collapsed
            image = np.where(lung & collapsed, image + 0.2, image)
            masks["Tension Pneumothorax"] = region
        else:
            depth_pixels = ndimage.distance_transform_edt(shapes[side]) / size
            lateral = (x - _side_center(side)) * _lateral_sign(side) > -0.06
            apex = 0.13
            limit = rng.uniform(0.42, 0.62)
            depth = rng.uniform(0.06, 0.1) * np.sqrt(np.clip(1 - (y - apex) / (limit - apex), 0, 1))
            region = lung & (depth_pixels < depth) & (lateral | (y < apex + 0.08))
        ring = ndimage.binary_dilation(region, iterations=max(1, size // 256)) & lung & ~region
        pleural_line += ring * 0.13
        markings = np.where(region, 0.0, markings)
        image = np.where(region, image - 0.06, image)
        # the visceral pleural line is the edge of the finding: part of what a reader marks
        masks["Pneumothorax"] = region | ring
        if "Tension Pneumothorax" in findings:
            masks["Tension Pneumothorax"] = region | ring

    if "Effusion" in findings:
        side = side_of["Effusion"]
        level = anatomy.base_y[side] - rng.uniform(0.07, 0.17)
        lateral = np.clip((x - _side_center(side)) * _lateral_sign(side) / 0.175, 0, 1.2)
        top = level - 0.07 * lateral**2
        region = shapes[side] & (y > top) & ~heart
        fluid = ndimage.gaussian_filter(region.astype(np.float32), sigma=max(size / 170, 1))
        image = image * (1 - fluid) + 0.5 * fluid
        markings = markings * (1 - fluid)
        masks["Effusion"] = region & lungs[side]

    if "Cardiomegaly" in findings:
        masks["Cardiomegaly"] = heart
    if "Enlarged Cardiomediastinum" in findings:
        masks["Enlarged Cardiomediastinum"] = mediastinum & (y < 0.5)

    if "Nodule" in findings:
        cx, cy = in_lung(side_of["Nodule"], 0.04, (0.22, 0.62))
        radius = rng.uniform(0.018, 0.028)
        distance = np.hypot(x - cx, y - cy)
        image += 0.2 * np.sqrt(np.clip(1 - (distance / radius) ** 2, 0, 1))
        masks["Nodule"] = distance < radius
    if "Mass" in findings:
        cx, cy = in_lung(side_of["Mass"], 0.07, (0.25, 0.6))
        radius = rng.uniform(0.04, 0.065)
        angle = np.arctan2(y - cy, x - cx)
        edge = radius * (1 + 0.13 * np.sin(3 * angle + rng.uniform(0, 6.28)))
        distance = np.hypot(x - cx, y - cy)
        image += 0.26 * np.clip((edge - distance) / (0.2 * radius), 0, 1)
        masks["Mass"] = distance < edge

    def opacity(region: np.ndarray, density: float, blur: float) -> np.ndarray:
        soft = ndimage.gaussian_filter(region.astype(np.float32), sigma=max(size * blur, 1))
        return soft * density

    if "Consolidation" in findings:
        side = side_of["Consolidation"]
        cx, cy = in_lung(side, 0.06, (0.5, 0.68))
        region = (
            ((x - cx) / rng.uniform(0.08, 0.11)) ** 2 + ((y - cy) / rng.uniform(0.07, 0.09)) ** 2
            < 1
        ) & lungs[side]
        image += opacity(region, 0.27, 0.008)
        for _ in range(4):
            direction = rng.uniform(0, 2 * math.pi)
            start = (cx, cy)
            end = (cx + 0.07 * math.cos(direction), cy + 0.06 * math.sin(direction))
            branch = (segment_distance(x, y, start, end) < 0.005) & region
            image -= branch * 0.13
        masks["Consolidation"] = region
    if "Pneumonia" in findings:
        region = np.zeros_like(lung_any)
        for _ in range(int(rng.integers(3, 6))):
            side = ("right", "left")[int(rng.integers(0, 2))]
            cx, cy = in_lung(side, 0.04, (0.45, 0.72))
            blob = np.hypot(x - cx, y - cy) < rng.uniform(0.025, 0.045)
            region |= blob & lungs[side]
        image += opacity(region, 0.2, 0.012)
        masks["Pneumonia"] = region
    if "Infiltration" in findings:
        side = side_of["Infiltration"]
        cx, cy = in_lung(side, 0.05, (0.3, 0.6))
        zone = (((x - cx) / 0.12) ** 2 + ((y - cy) / 0.16) ** 2 < 1) & lungs[side]
        texture = ndimage.gaussian_filter(
            rng.normal(size=image.shape).astype(np.float32), size / 150
        )
        texture = np.clip(texture / (texture.std() + 1e-6), 0, None)
        image += zone * 0.09 * (0.6 + 0.4 * texture)
        masks["Infiltration"] = zone
    if "Atelectasis" in findings:
        side = side_of["Atelectasis"]
        cx, cy = in_lung(side, 0.05, (0.55, 0.7))
        half = rng.uniform(0.06, 0.09)
        tilt = rng.uniform(-0.03, 0.03)
        band = segment_distance(x, y, (cx - half, cy - tilt), (cx + half, cy + tilt)) < rng.uniform(
            0.006, 0.01
        )
        band &= lungs[side]
        image += ndimage.gaussian_filter(band.astype(np.float32), 1.0) * 0.3
        masks["Atelectasis"] = (
            ndimage.binary_dilation(band, iterations=max(1, size // 100)) & lungs[side]
        )
    if "Edema" in findings:
        haze = np.zeros_like(image)
        for side in ("right", "left"):
            hx = 0.5 + _lateral_sign(side) * 0.12
            haze += np.exp(-(((x - hx) / 0.09) ** 2 + ((y - 0.47) / 0.12) ** 2))
        haze = haze * lung_any
        image += 0.2 * haze
        for side in ("right", "left"):
            for _ in range(6):
                ky = rng.uniform(0.58, 0.7)
                wall = _side_center(side) + _lateral_sign(side) * 0.15
                line = (
                    segment_distance(x, y, (wall, ky), (wall - _lateral_sign(side) * 0.025, ky))
                    < 0.0025
                )
                image += line * lungs[side] * 0.12
        masks["Edema"] = (haze > 0.35) & lung_any
    if "Emphysema" in findings:
        masks["Emphysema"] = lung_any.copy()
    if "Fibrosis" in findings:
        zone = np.zeros_like(lung_any)
        for side in ("right", "left"):
            depth = ndimage.distance_transform_edt(lungs[side]) / size
            zone |= lungs[side] & (depth < 0.07) & (y > 0.42)
        noise = rng.normal(size=image.shape).astype(np.float32)
        ridges = ndimage.gaussian_laplace(noise, sigma=max(size / 200.0, 1.0))
        net = (ridges > np.percentile(ridges, 80)).astype(np.float32)
        image += net * zone * 0.12
        masks["Fibrosis"] = zone
    if "Pleural Thickening" in findings:
        side = side_of["Pleural Thickening"]
        depth = ndimage.distance_transform_edt(shapes[side]) / size
        lateral = (x - _side_center(side)) * _lateral_sign(side) > 0.02
        upper = rng.uniform(0.22, 0.35)
        band = (
            lungs[side]
            & lateral
            & (depth < rng.uniform(0.02, 0.03))
            & (y > upper)
            & (y < upper + rng.uniform(0.2, 0.3))
        )
        image = np.where(band, np.maximum(image, 0.45), image)
        markings = np.where(band, 0.0, markings)
        masks["Pleural Thickening"] = band
    if "Hernia" in findings:
        cx, cy = 0.51 + anatomy.mediastinum_shift, rng.uniform(0.63, 0.68)
        radius = rng.uniform(0.045, 0.06)
        sac = canvas.disk(cx, cy, radius)
        air = sac & (y < cy + rng.uniform(-0.01, 0.01))
        image -= air * 0.2
        image += (sac & ~air) * 0.03
        level = ndimage.binary_dilation(air, iterations=1) & sac & ~air
        image += level * 0.06
        masks["Hernia"] = sac

    image = image + markings * 0.13 + pleural_line + bones
    image = ndimage.gaussian_filter(image, sigma=max(size / 600.0, 0.5))
    image += rng.normal(0.0, 0.008, image.shape).astype(np.float32)
    gamma = rng.uniform(0.85, 1.15)
    image = np.clip(image, 0.0, 1.0) ** gamma
    return _Drawing(image.astype(np.float32), masks)


def _draw_lateral(size: int, rng: np.random.Generator) -> np.ndarray:
    """A left lateral view: spine posterior (image right), heart anterior, one lung field."""
    canvas = _Canvas(size, rng)
    x, y = canvas.x, canvas.y
    body = (((x - 0.5) / 0.36) ** 2 + ((y - 0.55) / 0.55) ** 2) < 1
    image = np.where(body, 0.47, 0.04).astype(np.float32)
    lung = (((x - 0.52) / 0.24) ** 2 + ((y - 0.45) / 0.32) ** 2) < 1
    image = np.where(lung, 0.2, image)
    heart = (((x - 0.4) / 0.14) ** 2 + ((y - 0.62) / 0.13) ** 2) < 1
    image = np.where(heart, 0.58, image)
    for index in range(8):
        vertebra = (np.abs(x - 0.74) < 0.04) & (np.abs(y - (0.2 + index * 0.075)) < 0.03)
        image += vertebra * 0.25
    sternum = np.abs(x - 0.19 - 0.05 * y) < 0.012
    image += sternum * body * 0.15
    image = ndimage.gaussian_filter(image, sigma=max(size / 500.0, 0.5))
    image += rng.normal(0.0, 0.008, image.shape).astype(np.float32)
    return np.clip(image, 0, 1).astype(np.float32)


def _stored(image: np.ndarray, photometric: str) -> np.ndarray:
    values = np.clip(np.rint(image * (MAX_STORED - 200) + 100), 0, MAX_STORED).astype(np.uint16)
    return (MAX_STORED - values).astype(np.uint16) if photometric == "MONOCHROME1" else values


def _display_lut(rng: np.random.Generator) -> np.ndarray:
    """A gentle S-shaped display curve (what a CR reader often puts in VOI LUT Sequence)."""
    stored = np.arange(MAX_STORED + 1, dtype=np.float64)
    center = rng.uniform(0.45, 0.55) * MAX_STORED
    slope = rng.uniform(3.0, 4.0) / MAX_STORED
    curve = 1.0 / (1.0 + np.exp(-slope * (stored - center) * 2.2))
    curve = (curve - curve.min()) / (curve.max() - curve.min())
    return np.rint(curve * MAX_STORED).astype(np.uint16)


def chest_radiograph(
    study_seed: int,
    image_index: int,
    findings: frozenset[str],
    *,
    info: StudyInfo,
    view: str = "PA",
    modality: str = "DX",
    photometric: str = "MONOCHROME2",
    voi: str = "window",
    transfer_syntax: TransferSyntaxName = "explicit",
    size: int = 512,
    series_number: int = 1,
) -> tuple[Dataset, dict[str, np.ndarray]]:
    """One radiograph (dataset, masks by label). ``voi``: window, lut or none."""
    rng = rng_for(KIND, study_seed * 1000 + image_index)
    frontal = view in ("PA", "AP")
    if frontal:
        drawing = _draw_frontal(size, rng, findings)
        image, masks = drawing.image, drawing.masks
    else:
        image, masks = _draw_lateral(size, rng), {}
    sop_class = DX_IMAGE_FOR_PRESENTATION if modality == "DX" else CR_IMAGE_STORAGE
    series_uid = phantom_uid(KIND, study_seed, "series", series_number)
    ds = base_dataset(
        info,
        sop_class_uid=sop_class,
        sop_instance_uid=phantom_uid(KIND, study_seed, "image", image_index),
        series_instance_uid=series_uid,
        modality=modality,
        series_number=series_number,
        instance_number=image_index + 1,
        series_description=f"CHEST {view}",
        body_part="CHEST",
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    view_code = {
        "PA": ("272479007", "postero-anterior"),  # DICOM CID 4010
        "AP": ("399348003", "antero-posterior"),
    }.get(view, ("399173006", "left lateral"))
    radiograph_modules(
        ds,
        body_part="CHEST",
        view_position="LL" if view == "LATERAL" else view,
        view_code=view_code,
        image_laterality="U",
        photometric=photometric,
    )
    ds.PatientOrientation = ["R", "F"] if view == "AP" else (["L", "F"] if frontal else ["A", "F"])
    spacing = DETECTOR_MM / size
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.KVP = 120 if frontal else 110
    stored = _stored(image, photometric)
    set_pixels(ds, stored, bits_stored=BITS_STORED, photometric=photometric)
    if voi == "window":
        center = rng.uniform(0.47, 0.53) * MAX_STORED
        width = rng.uniform(0.9, 1.05) * MAX_STORED
        if photometric == "MONOCHROME1":  # the same display, from reversed stored values
            center = MAX_STORED - center
        ds.WindowCenter = round(center, 1)
        ds.WindowWidth = round(width, 1)
        ds.VOILUTFunction = "LINEAR"
    elif voi == "lut":
        table = _display_lut(rng)
        if photometric == "MONOCHROME1":
            table = (MAX_STORED - table[::-1]).astype(np.uint16)
        ds.VOILUTSequence = voi_lut_sequence(BITS_STORED, table)
    encode(ds, transfer_syntax)
    return ds, masks


def chest_xray_study(
    seed: int,
    findings: Iterable[str] = (),
    *,
    patient_id: str | None = None,
    accession_number: str | None = None,
    study_date: str | None = None,
    views: Sequence[str] = ("PA",),
    modality: str = "DX",
    photometric: str = "MONOCHROME2",
    voi: str = "window",
    transfer_syntax: TransferSyntaxName = "explicit",
    size: int = 512,
) -> PhantomStudy:
    """A chest radiograph study: one image per view, ``findings`` drawn on the frontal ones.

    ``findings`` are label names of :data:`CHEST_LABELS`; implied labels (a tension
    pneumothorax is a pneumothorax, a nodule a lung lesion ...) are added to the truth.
    """
    requested = frozenset(findings)
    unknown = requested - set(CHEST_LABELS)
    if unknown:
        raise ValueError(f"unknown chest findings: {sorted(unknown)}")
    # a generic label asked for on its own is drawn as its most typical concrete finding
    if "Lung Lesion" in requested and not requested & {"Nodule", "Mass"}:
        requested |= {"Mass"}
    if "Lung Opacity" in requested and not requested & {
        "Consolidation",
        "Pneumonia",
        "Infiltration",
        "Atelectasis",
        "Edema",
    }:
        requested |= {"Consolidation"}
    labels = expand_implied(requested, IMPLICATIONS)
    drawn = frozenset(label for label in labels if label in DRAWN_FINDINGS)
    info = study_info(
        KIND,
        seed,
        description="XR CHEST",
        patient_id=patient_id,
        accession_number=accession_number,
        study_date=study_date,
    )
    study = PhantomStudy(kind=KIND, datasets=[], labels=labels)
    for index, view in enumerate(views):
        ds, masks = chest_radiograph(
            seed,
            index,
            drawn,
            info=info,
            view=view,
            modality=modality,
            photometric=photometric,
            voi=voi,
            transfer_syntax=transfer_syntax,
            size=size,
            series_number=index + 1,
        )
        study.datasets.append(ds)
        key = (str(ds.SOPInstanceUID), None)
        for label, mask in masks.items():
            study.add_mask(label, key, mask)
        for label, sources in IMPLICATIONS.items():
            for implied in sources:
                if label in masks:
                    study.add_mask(implied, key, masks[label])
    if labels and views and any(v in ("PA", "AP") for v in views):
        missing = [label for label in labels if label not in study.masks]
        if missing:  # every drawn label must have left a mark
            raise AssertionError(f"phantom drew no mask for {missing}")
    return study


def random_chest_findings(rng: np.random.Generator, normal_fraction: float = 0.3) -> frozenset[str]:
    """A plausible random finding set for training: often normal, else 1-3 findings."""
    if rng.random() < normal_fraction:
        return frozenset()
    count = int(rng.choice([1, 1, 2, 2, 3]))
    chosen = set(rng.choice(np.array(DRAWN_FINDINGS), size=count, replace=False).tolist())
    if "Tension Pneumothorax" in chosen and "Pneumothorax" in chosen:
        chosen.discard("Pneumothorax")
    return frozenset(chosen)
