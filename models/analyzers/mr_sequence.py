"""Which MR series of a study to read: the sequence of each series, from its headers (pure).

A brain MR study holds a localizer, diffusion, FLAIR, T2, T1 before and after contrast, and
more; vendors name them differently and often in the site's language. Each series is
classified from what the headers say, strongest evidence first:

- exclusions: localizer, diffusion / ADC / trace, SWI, perfusion, angiography, phase maps,
  projections (Image Type, descriptions, sequence names);
- inversion recovery with a long inversion time (FLAIR), read from Scanning Sequence,
  Sequence Variant, Sequence Name, Inversion Time (classic or Enhanced MR functional groups);
- the sequence named in Series Description, Protocol Name, Sequence Name (FLAIR, T2, T1,
  MPRAGE, BRAVO, SPGR, ...), accent-folded;
- the echo and repetition times (T2: long TE and TR; T1: short TE and TR);
- for T1, contrast: Contrast/Bolus Agent (0018,0010) or its sequence, or the description
  ("post", "+C", "Gd", "KM", "MDC", ...), unless the description says "pre" or "nativ".

The default order is FLAIR, then T2, then post-contrast T1, then T1, then series nothing
identified; a package that declares the sequences it was trained on (its manifest's
``sequences``) replaces it with its own. Excluded series are never read. Slice count plays no
part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydicom import Dataset

from integrations.dicom.body_part import fold


class MrSequence(StrEnum):
    FLAIR = "FLAIR"
    T2 = "T2"
    T1_POST = "T1 post-contrast"
    T1 = "T1"
    UNKNOWN = "unidentified"
    EXCLUDED = "excluded"


PREFERENCE = (
    MrSequence.FLAIR,
    MrSequence.T2,
    MrSequence.T1_POST,
    MrSequence.T1,
    MrSequence.UNKNOWN,
)
# What a package's manifest may declare it was trained on (an excluded series is never read).
READABLE_SEQUENCES = PREFERENCE

FLAIR_MIN_INVERSION_MS = 1500.0
T2_MIN_ECHO_MS = 70.0
T2_MIN_REPETITION_MS = 1500.0
T1_MAX_ECHO_MS = 30.0
T1_MAX_REPETITION_MS = 1000.0

# Words in descriptions, protocol and sequence names (accent-folded, lower case), as regular
# expressions matched on word boundaries (a boundary is any character but a letter or digit).
EXCLUDE_WORDS = {
    "localizer": r"locali[sz]er|loc|scout|survey|planning|3 ?plane|tri ?pilot|aahead\w*",
    "diffusion": r"dwi|diff\w*|adc|trace\w*|dti|tensor|ep ?b\d+\w*|b ?1000|resolve",
    "susceptibility": r"swi|swan|susc\w*|veno\w*|minip|mip|hemo|t2 ?\*|t2star|t2 ?fl2d",
    "perfusion": r"perf\w*|dsc|dce|asl|pcasl|cbf|cbv|mtt",
    "angiography": r"tof|angio\w*|mra|pc ?3d|flow",
    "spectroscopy": r"svs|csi|spectro\w*",
    "derived map": r"phase|pha|mag|fa|colfa|t1 ?map|t2 ?map|map\w*",
}
FLAIR_WORDS = r"flair|dark ?fl\w*|darkfluid|fluid attenuated"
T2_WORDS = r"t2\w*|tse t2|t2w|propeller t2|blade t2"
T1_WORDS = r"t1\w*|mprage|mp ?rage|bravo|spgr|fspgr|fl3d\w*|vibe|tfe|t1w|space t1|cube t1"
STIR_WORDS = r"stir|tirm ?stir"
POST_WORDS = (
    r"post|c ?\+|\+ ?c|\+ ?km|km|gd\w*|gado\w*|contrast\w*|kontrast\w*|mdc|ce|pc|"
    r"con contraste|com contraste|avec injection|injecte\w*|mit km"
)
PRE_WORDS = r"pre|nativ\w*|native|sans injection|sin contraste|senza mdc|sem contraste|sin gd"
# Image Type values (third and later) that name a series no tumour model should read.
EXCLUDED_IMAGE_TYPES = {
    "LOCALIZER": "localizer",
    "DIFFUSION": "diffusion",
    "ADC": "diffusion",
    "TRACEW": "diffusion",
    "FA": "derived map",
    "PROJECTION IMAGE": "projection",
    "MIP": "projection",
    "PHASE": "derived map",
    "P": "derived map",
    "SWI": "susceptibility",
    "PERFUSION": "perfusion",
}


@dataclass(frozen=True)
class SequenceCall:
    """What a series is, and the header evidence that said so, in words."""

    sequence: MrSequence
    evidence: str

    def to_json(self) -> dict[str, str]:
        return {"sequence": self.sequence.value, "evidence": self.evidence}


@dataclass(frozen=True)
class RankedSeries:
    series_instance_uid: str
    call: SequenceCall
    axial: bool


def _words(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z0-9])(?:{pattern})(?![a-z0-9])")


_EXCLUDE = {name: _words(pattern) for name, pattern in EXCLUDE_WORDS.items()}
_FLAIR = _words(FLAIR_WORDS)
_T2 = _words(T2_WORDS)
_T1 = _words(T1_WORDS)
_STIR = _words(STIR_WORDS)
_POST = _words(POST_WORDS)
_PRE = _words(PRE_WORDS)


def header_value(dataset: Dataset, keyword: str) -> Any:
    """``keyword`` from the top level, else from the first shared or per-frame functional
    group (Enhanced MR keeps timing, inversion and contrast there), else None."""
    if keyword in dataset and dataset.get(keyword) not in (None, ""):
        return dataset.get(keyword)
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in (dataset.get(groups) or [])[:1]:
            for element in group:
                if element.VR != "SQ":
                    continue
                for item in element.value[:1]:
                    if keyword in item and item.get(keyword) not in (None, ""):
                        return item.get(keyword)
    return None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part for part in value.split("\\") if part]
    try:
        return [str(part) for part in value]
    except TypeError:
        return [str(value)]


def _text_of(dataset: Dataset) -> tuple[str, str]:
    """(folded text of descriptions and sequence names, the raw text for quoting)."""
    parts = [
        str(dataset.get(keyword, "") or "")
        for keyword in ("SeriesDescription", "ProtocolName", "SequenceName", "PulseSequenceName")
    ]
    raw = " | ".join(part for part in parts if part.strip())
    return fold(raw).replace("_", " ").replace("-", " "), raw


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return match.group(0) if match else None


def _is_contrast(dataset: Dataset, text: str) -> str | None:
    if _first(_PRE, text):
        return None
    agent = str(dataset.get("ContrastBolusAgent", "") or "").strip()
    if agent:
        return f"Contrast/Bolus Agent {agent!r}"
    if dataset.get("ContrastBolusAgentSequence"):
        return "Contrast/Bolus Agent Sequence"
    usage = header_value(dataset, "ContrastBolusAgentAdministered")
    if str(usage or "").upper() == "YES":
        return "Contrast/Bolus Usage: administered"
    word = _first(_POST, text)
    return f"description {word!r}" if word else None


def classify_series(dataset: Dataset) -> SequenceCall:
    """The sequence of the series ``dataset`` belongs to (any one instance of it)."""
    text, raw = _text_of(dataset)
    image_type = [value.upper() for value in _strings(dataset.get("ImageType"))]
    for value in image_type[2:]:
        if value in EXCLUDED_IMAGE_TYPES:
            return SequenceCall(
                MrSequence.EXCLUDED, f"{EXCLUDED_IMAGE_TYPES[value]} (Image Type {value})"
            )
    for name, pattern in _EXCLUDE.items():
        word = _first(pattern, text)
        if word:
            return SequenceCall(MrSequence.EXCLUDED, f"{name} ({word!r} in {raw!r})")

    scanning = {value.upper() for value in _strings(dataset.get("ScanningSequence"))}
    sequence_name = fold(str(dataset.get("SequenceName", "") or ""))
    inversion_recovery = (
        "IR" in scanning
        or str(header_value(dataset, "InversionRecovery") or "").upper() == "YES"
        or sequence_name.lstrip("*").startswith("tir")
    )
    inversion_ms = _number(header_value(dataset, "InversionTime")) or _number(
        header_value(dataset, "InversionTimes")
    )
    echo_ms = _number(header_value(dataset, "EchoTime")) or _number(
        header_value(dataset, "EffectiveEchoTime")
    )
    repetition_ms = _number(header_value(dataset, "RepetitionTime"))
    gradient = (
        "GR" in scanning
        or str(header_value(dataset, "EchoPulseSequence") or "").upper() == "GRADIENT"
    )

    t1_word = _first(_T1, text)
    flair_word = _first(_FLAIR, text)
    if flair_word and not t1_word:
        return SequenceCall(MrSequence.FLAIR, f"{flair_word!r} in {raw!r}")
    if _first(_STIR, text) or (inversion_recovery and inversion_ms and inversion_ms < 300):
        return SequenceCall(MrSequence.EXCLUDED, "STIR (short inversion time)")
    if inversion_recovery and inversion_ms and inversion_ms >= FLAIR_MIN_INVERSION_MS:
        return SequenceCall(
            MrSequence.FLAIR, f"inversion recovery with Inversion Time {inversion_ms:g} ms"
        )

    t2_word = _first(_T2, text)
    t1: str | None = None
    if t1_word:
        t1 = f"{t1_word!r} in {raw!r}"
    elif t2_word:
        return SequenceCall(MrSequence.T2, f"{t2_word!r} in {raw!r}")
    elif (
        echo_ms is not None
        and repetition_ms is not None
        and not gradient
        and echo_ms >= T2_MIN_ECHO_MS
        and repetition_ms >= T2_MIN_REPETITION_MS
    ):
        return SequenceCall(
            MrSequence.T2, f"Echo Time {echo_ms:g} ms, Repetition Time {repetition_ms:g} ms"
        )
    elif inversion_recovery and inversion_ms and inversion_ms < FLAIR_MIN_INVERSION_MS:
        t1 = f"inversion recovery with Inversion Time {inversion_ms:g} ms (T1-weighted)"
    elif (
        echo_ms is not None
        and repetition_ms is not None
        and echo_ms <= T1_MAX_ECHO_MS
        and repetition_ms <= T1_MAX_REPETITION_MS
    ):
        t1 = f"Echo Time {echo_ms:g} ms, Repetition Time {repetition_ms:g} ms"
    if t1 is None:
        return SequenceCall(MrSequence.UNKNOWN, f"no sequence evidence in {raw or 'the headers'!r}")
    contrast = _is_contrast(dataset, text)
    if contrast:
        return SequenceCall(MrSequence.T1_POST, f"{t1}; contrast from {contrast}")
    return SequenceCall(MrSequence.T1, t1)


def _is_axial(dataset: Dataset) -> bool:
    orientation = header_value(dataset, "ImageOrientationPatient")
    values = [float(v) for v in orientation] if orientation is not None else []
    if len(values) != 6:
        return True  # no orientation: the preparation step decides
    row, column = values[:3], values[3:]
    normal_z = row[0] * column[1] - row[1] * column[0]
    return abs(normal_z) >= 0.866  # within 30 degrees of axial, as volume.is_axial


def rank_series(
    series: Mapping[str, Sequence[Dataset]], preference: Sequence[MrSequence] = PREFERENCE
) -> list[RankedSeries]:
    """Every series, best first: by ``preference``, axial before other planes, then in the
    order given; sequences not in ``preference`` and excluded series come last."""
    ranked = []
    for uid, members in series.items():
        call = classify_series(members[0])
        ranked.append(RankedSeries(uid, call, _is_axial(members[0])))
    order = {sequence: index for index, sequence in enumerate(preference)}

    def key(item: tuple[int, RankedSeries]) -> tuple[int, int, int]:
        position, entry = item
        return (order.get(entry.call.sequence, len(order)), 0 if entry.axial else 1, position)

    return [entry for _, entry in sorted(enumerate(ranked), key=key)]
