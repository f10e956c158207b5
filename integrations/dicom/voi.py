"""The grey-scale pipeline shared by the models and the renderer, on pydicom's own LUTs (pure).

One implementation of PS3.3 C.11 for every consumer, so that the model sees what the viewer
shows: the Modality LUT (Rescale Slope/Intercept or Modality LUT Sequence) with pydicom's
``apply_modality_lut``, the VOI (VOI LUT Sequence or window LINEAR / LINEAR_EXACT / SIGMOID)
with ``apply_voi`` / ``apply_windowing``, then MONOCHROME1 inversion.

pydicom reads these attributes from the top level of a dataset only. Enhanced (multi-frame)
objects put them in functional groups (Pixel Value Transformation, Frame VOI LUT; per-frame
first, then shared), so :func:`frame_modality_source` and :func:`frame_voi` find the item
that holds them for one frame, and the transforms run on a small view that carries exactly
the attributes pydicom needs. The output range is ``0 .. 2**output_bits - 1``: 1 bit gives
[0, 1] (model input), 8 bits [0, 255] (display).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

VOI_KEYWORDS = ("WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence")


def functional_group(dataset: Dataset, frame_index: int, sequence: str) -> Dataset | None:
    """The item of ``sequence`` for one frame (0-based): per-frame group first, then shared."""
    for groups_name, index in (
        ("PerFrameFunctionalGroupsSequence", frame_index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = dataset.get(groups_name)
        if groups and len(groups) > index:
            item = groups[index].get(sequence)
            if item:
                return item[0]
    return None


def frame_modality_source(dataset: Dataset, frame_index: int = 0) -> Dataset:
    """Where the frame's Modality LUT is: its Pixel Value Transformation item, else the image."""
    item = functional_group(dataset, frame_index, "PixelValueTransformationSequence")
    return item if item is not None and "RescaleSlope" in item else dataset


def modality_lut(pixels: np.ndarray, source: Dataset) -> np.ndarray:
    """Stored values through ``source``'s Modality LUT (identity without one), as float64."""
    return np.asarray(apply_modality_lut(pixels, source), dtype=np.float64)


def first_value(value: object) -> float | None:
    """The first value of a possibly multi-valued numeric attribute, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) == 0:
            return None
        value = value[0]
    return float(value)  # type: ignore[arg-type]


def valid_window(center: float | None, width: float | None, function: str) -> bool:
    """A window pydicom (and PS3.3 C.11.2.1.2) accepts: width >= 1 (LINEAR) or > 0."""
    if center is None or width is None:
        return False
    return width >= 1 if function.upper() == "LINEAR" else width > 0


def window_function(item: Dataset) -> str:
    return str(item.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()


def has_voi(item: Dataset) -> bool:
    """Whether ``item`` carries a usable VOI LUT Sequence or first window."""
    sequence = item.get("VOILUTSequence")
    if sequence and "LUTDescriptor" in sequence[0] and "LUTData" in sequence[0]:
        return True
    return valid_window(
        first_value(item.get("WindowCenter")),
        first_value(item.get("WindowWidth")),
        window_function(item),
    )


def frame_voi(dataset: Dataset, frame_index: int = 0) -> Dataset | None:
    """The item holding the frame's VOI: its Frame VOI LUT item, else the image, else None."""
    item = functional_group(dataset, frame_index, "FrameVOILUTSequence")
    for candidate in (item, dataset):
        if candidate is not None and has_voi(candidate):
            return candidate
    return None


def _view(output_bits: int, source: Dataset | None = None) -> Dataset:
    """A dataset pydicom reads as an unsigned image of ``output_bits`` with ``source``'s VOI."""
    view = Dataset()
    view.PhotometricInterpretation = "MONOCHROME2"
    view.BitsStored = output_bits
    view.PixelRepresentation = 0
    if source is not None:
        for keyword in VOI_KEYWORDS:
            if keyword in source:
                view[keyword] = source[keyword]
        implicit, little = source.original_encoding
        view.set_original_encoding(
            bool(implicit), True if little is None else bool(little), source.original_character_set
        )
    else:
        view.set_original_encoding(False, True)
    return view


def apply_frame_voi(
    values: np.ndarray, voi: Dataset, *, output_bits: int = 1, index: int = 0
) -> np.ndarray:
    """``voi``'s VOI LUT (preferred, as pydicom) or window number ``index`` on modality values.

    A VOI LUT's output is rescaled from its own bit depth to the output range.
    """
    view = _view(output_bits, voi)
    maximum = float(2**output_bits - 1)
    sequence = view.get("VOILUTSequence")
    if sequence and "LUTDescriptor" in sequence[index]:
        entries, first_mapped, bits = (int(v) for v in sequence[index].LUTDescriptor)
        # the LUT indexes integers; clamp first so that pydicom's unsigned index cannot wrap
        stored = np.clip(np.rint(values), first_mapped, first_mapped + (entries or 65536) - 1)
        output = apply_voi(stored.astype(np.int64), view, index)
        return np.asarray(output, dtype=np.float64) * (maximum / float(2**bits - 1))
    return np.asarray(apply_windowing(values, view, index), dtype=np.float64)


def apply_window(
    values: np.ndarray,
    center: float,
    width: float,
    function: str = "LINEAR",
    *,
    output_bits: int = 1,
) -> np.ndarray:
    """An explicit window (an analyzer's or a presentation state's) with pydicom's semantics."""
    view = _view(output_bits)
    # FD, not the attributes' DS: the value is used exactly, not rounded to 16 characters
    view.add_new("WindowCenter", "FD", float(center))
    view.add_new("WindowWidth", "FD", float(width))
    view.VOILUTFunction = (function or "LINEAR").upper()
    return np.asarray(apply_windowing(np.asarray(values), view), dtype=np.float64)


def shown_inverted(image: Dataset, presentation_state: Dataset | None = None) -> bool:
    """Whether the VOI output is inverted for display: Presentation LUT Shape INVERSE of the
    presentation state, else the image's MONOCHROME1."""
    if presentation_state is not None:
        return str(presentation_state.get("PresentationLUTShape", "IDENTITY")) == "INVERSE"
    return str(image.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1"
