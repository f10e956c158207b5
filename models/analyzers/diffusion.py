"""Diffusion MRI series selection: high-b images by b-value, ADC maps by Image Type (pure).

Series descriptions are free text and say nothing reliable ("SEQ 5"), so the diffusion
images are found from what the scanner records: the b-value in Diffusion b-value
(0018,9087), at the top level or in the MR Diffusion Sequence (0018,9117, also in the shared
functional groups of an enhanced object), else Siemens' private B_value (0019,xx0C of "SIEMENS
MR HEADER") or GE's slop_int_6 (0043,xx39 of "GEMS_PARM_01", first value, less the 10^9 flag
GE adds). Instances are grouped by series and b-value; the high-b group (500-3000 s/mm2, the
highest first) is the diffusion-weighted image. The ADC map is a series whose Image Type
names ADC (Siemens, GE, Philips all write it there); exponential ADC and FA maps are not ADC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.multival import MultiValue

from models.preprocess import group_by_series

HIGH_B_RANGE = (500.0, 3000.0)
GE_B_VALUE_FLAG = 1_000_000_000


def _private_value(ds: Dataset, group: int, creator: str, element: int) -> object | None:
    try:
        block = ds.private_block(group, creator)
        return block[element].value
    except KeyError:
        return None


def _number(value: object) -> float | None:
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def b_value(ds: Dataset) -> float | None:
    """The instance's diffusion b-value in s/mm2, or None when no header gives one."""
    if "DiffusionBValue" in ds:
        return _number(ds.DiffusionBValue)
    for holder in (ds, *(ds.get("SharedFunctionalGroupsSequence") or [])):
        for item in holder.get("MRDiffusionSequence") or []:
            if "DiffusionBValue" in item:
                return _number(item.DiffusionBValue)
    manufacturer = str(ds.get("Manufacturer", "") or "").upper()
    if "SIEMENS" in manufacturer:
        return _number(_private_value(ds, 0x0019, "SIEMENS MR HEADER", 0x0C))
    if manufacturer.startswith("GE"):
        value = _number(_private_value(ds, 0x0043, "GEMS_PARM_01", 0x39))
        return None if value is None else float(value % GE_B_VALUE_FLAG)
    return None


def is_adc_map(ds: Dataset) -> bool:
    image_type = {str(value).upper() for value in (ds.get("ImageType") or [])}
    return "ADC" in image_type and not image_type & {"EADC", "FA", "EXP"}


@dataclass(frozen=True)
class DiffusionSelection:
    dwi: list[Dataset] | None  # the high-b images of one series
    dwi_b_value: float | None
    adc: list[Dataset] | None
    calls: list[dict[str, object]]  # per series: what was found (for the result's details)


def select_diffusion(datasets: Sequence[Dataset]) -> DiffusionSelection:
    """The highest-b diffusion images and the ADC map of a study (either may be None)."""
    groups = group_by_series(list(datasets))
    calls: list[dict[str, object]] = []
    high_b: list[tuple[float, list[Dataset]]] = []
    adc: list[Dataset] | None = None
    for uid, members in groups.items():
        if all(is_adc_map(ds) for ds in members):
            calls.append({"series_instance_uid": uid, "call": "ADC map"})
            adc = adc or members
            continue
        by_b: dict[float, list[Dataset]] = {}
        for ds in members:
            value = b_value(ds)
            if value is not None:
                by_b.setdefault(value, []).append(ds)
        calls.append(
            {
                "series_instance_uid": uid,
                "call": "diffusion" if by_b else "not diffusion (no b-value)",
                "b_values": sorted(by_b),
            }
        )
        for value, instances in by_b.items():
            if HIGH_B_RANGE[0] <= value <= HIGH_B_RANGE[1]:
                high_b.append((value, instances))
    high_b.sort(key=lambda entry: -entry[0])
    chosen = high_b[0] if high_b else (None, None)
    return DiffusionSelection(chosen[1], chosen[0], adc, calls)
