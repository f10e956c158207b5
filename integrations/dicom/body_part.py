"""Which body part a series shows, from the evidence real headers carry (pure).

BodyPartExamined is missing or wrong on most MR and on much CT, so the body part is resolved
from, in this order:

1. a site override (by Station Name, calling AE title or protocol);
2. Anatomic Region Sequence codes (SNOMED CT, or the older SNOMED-RT "SRT" codes);
3. BodyPartExamined, when it holds a known term (or a word the keyword table knows);
4. keywords in Series Description, Protocol Name, then Study Description, in English, French,
   German, Spanish, Italian, Portuguese and Dutch, compared with accents folded.

The series' own texts come before the study's: a "CT THORAX ABDOMEN" study has a thorax
series and an abdomen series. :class:`BodyPartEvidence` says which evidence decided, in words
the routing reason can carry.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

# A coded anatomic region: (coding scheme designator, code value, code meaning).
AnatomicRegion = tuple[str, str, str]

SNOMED_SCHEMES = frozenset({"SCT", "SRT", "SNM3", "99SDM"})

# SNOMED CT concept (and its SNOMED-RT code, as older modalities send it) → body part term
# (PS3.16 Annex L, CID 4031 "Common Anatomic Regions").
ANATOMIC_REGION_CODES: dict[str, str] = {
    # head and brain
    "69536005": "HEAD",
    "T-D1100": "HEAD",
    "12738006": "BRAIN",
    "T-A0100": "BRAIN",
    "89546000": "HEAD",
    "T-11100": "HEAD",  # skull
    "45048000": "NECK",
    "T-D1600": "NECK",
    # trunk
    "816094009": "CHEST",  # current CID 4031 "Chest"
    "43799004": "CHEST",
    "T-D3000": "CHEST",
    "51185008": "CHEST",  # thoracic structure
    "39607008": "CHEST",
    "T-28000": "CHEST",  # lung
    "80891009": "HEART",
    "T-32000": "HEART",
    "76752008": "BREAST",
    "T-04000": "BREAST",
    "113345001": "ABDOMEN",
    "818981001": "ABDOMEN",
    "T-D4000": "ABDOMEN",
    "12921003": "PELVIS",
    "816092008": "PELVIS",
    "T-D6000": "PELVIS",
    "818982008": "ABDOMENPELVIS",
    # spine
    "421060004": "SPINE",
    "T-D04FF": "SPINE",
    "122494005": "CSPINE",
    "T-11501": "CSPINE",
    "122495006": "TSPINE",
    "T-11502": "TSPINE",
    "122496007": "LSPINE",
    "T-11503": "LSPINE",
    "15825003": "AORTA",
    "T-42000": "AORTA",
    # extremities
    "66019005": "EXTREMITY",
    "T-D0300": "EXTREMITY",
    "53120007": "ARM",
    "T-D8000": "ARM",  # upper limb
    "61685007": "LEG",
    "T-D9000": "LEG",  # lower limb
    "16982005": "SHOULDER",
    "T-D2220": "SHOULDER",
    "40983000": "ARM",
    "T-D8200": "ARM",  # upper arm
    "85050009": "HUMERUS",
    "T-12410": "HUMERUS",
    "127949000": "ELBOW",
    "T-D8300": "ELBOW",
    "14975008": "FOREARM",
    "T-D8500": "FOREARM",
    "74670003": "WRIST",
    "T-15460": "WRIST",
    "85562004": "HAND",
    "T-D8700": "HAND",
    "29836001": "HIP",
    "24136001": "HIP",
    "T-15710": "HIP",
    "71341001": "FEMUR",
    "T-12710": "FEMUR",
    "72696002": "KNEE",
    "T-D9200": "KNEE",
    "30021000": "LEG",
    "T-D9400": "LEG",  # lower leg
    "70258002": "ANKLE",
    "T-15750": "ANKLE",
    "56459004": "FOOT",
    "T-D9700": "FOOT",
}

# One table of keywords: body part → words, accent-folded and lower case. A word matches a
# whole word of the text; ``word*`` matches the start of a word (German compounds such as
# "Kniegelenk", adjectives such as "cérébral"); words may be phrases ("thoracic spine").
# When several match, the one that starts first in the text wins, the longer on a tie.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "BRAIN": (
        "brain",
        "cerebr*",
        "cerebel*",
        "encephal*",
        "encefal*",
        "enzephal*",
        "gehirn*",
        "hirn*",
        "cerveau",
        "cervel*",
        "hersen*",
        "brein",
        "neurocran*",
    ),
    "HEAD": (
        "head",
        "skull",
        "cran*",
        "kopf*",
        "schadel*",
        "schaedel*",
        "tete",
        "cabeza",
        "testa",
        "cabeca",
        "hoofd",
        "schedel*",
        "orbit*",
        "sella",
        "hypophys*",
        "pituitar*",
    ),
    "NECK": ("neck", "hals", "cou", "cuello", "collo", "pescoco", "nek"),
    "CSPINE": (
        "cspine",
        "c spine",
        "cervical spine",
        "hws",
        "halswirbel*",
        "rachis cervical",
        "columna cervical",
        "colonna cervicale",
        "coluna cervical",
        "cervicale wervelkolom",
    ),
    "TSPINE": (
        "tspine",
        "t spine",
        "thoracic spine",
        "dorsal spine",
        "bws",
        "brustwirbel*",
        "rachis dorsal",
        "columna dorsal",
        "columna toracica",
        "colonna dorsale",
        "coluna toracica",
        "thoracale wervelkolom",
    ),
    "LSPINE": (
        "lspine",
        "l spine",
        "lumbar spine",
        "lumb*",
        "lws",
        "lendenwirbel*",
        "lomba*",
        "lombo*",
        "rachis lombaire",
    ),
    "SPINE": (
        "spine",
        "spinal",
        "wirbelsaule",
        "wirbelsaeule",
        "rachis",
        "colonne",
        "columna",
        "colonna",
        "coluna",
        "wervelkolom",
        "myelo*",
    ),
    "CHEST": (
        "chest",
        "thorax",
        "thorac*",
        "thorak*",
        "torax",
        "torac*",
        "borst*",
        "lung*",
        "poumon*",
        "pulmon*",
        "polmon*",
        "pulmao",
        "longen",
        "pleur*",
    ),
    "AORTA": ("aorta", "aort*", "aorte", "aortic*", "hauptschlagader*"),
    "HEART": ("heart", "cardi*", "coeur", "herz", "corazon", "cuore", "coracao", "hart"),
    "BREAST": ("breast", "mamma*", "mammo*", "sein", "mama", "borstklier*"),
    "ABDOMEN": (
        "abdom*",
        "bauch*",
        "addom*",
        "buik*",
        "liver",
        "leber",
        "foie",
        "higado",
        "fegato",
        "figado",
        "pancrea*",
        "pankrea*",
        "kidney*",
        "niere*",
        "renal",
    ),
    "PELVIS": (
        "pelvis",
        "pelvi*",
        "becken*",
        "bassin",
        "bacino",
        "pelve",
        "bekken*",
        "prostat*",
    ),
    "SHOULDER": ("shoulder*", "schulter*", "epaule", "hombro", "spalla", "ombro", "schouder*"),
    "ELBOW": (
        "elbow*",
        "ellbogen*",
        "ellenbogen*",
        "coude",
        "codo",
        "gomito",
        "cotovelo",
        "elleboog",
    ),
    "WRIST": (
        "wrist*",
        "handgelenk*",
        "poignet",
        "muneca",
        "polso",
        "punho",
        "pols",
        "carp*",
    ),
    "HAND": ("hand", "hande", "main", "mano", "mao", "finger*", "doigt*", "dedo*", "vinger*"),
    "HIP": ("hip", "hips", "hufte*", "huefte*", "hanche", "cadera", "anca", "quadril", "heup*"),
    "KNEE": ("knee*", "knie*", "genou*", "rodilla", "ginocchi*", "joelho"),
    "ANKLE": (
        "ankle*",
        "sprunggelenk*",
        "osg",
        "cheville",
        "tobillo",
        "caviglia",
        "tornozelo",
        "enkel*",
    ),
    "FOOT": ("foot", "feet", "fuss", "fusse", "pied", "pie", "piede", "voet"),
    "EXTREMITY": ("extremit*", "extremidad*", "estremit*", "membre*", "limb*", "gliedmas*"),
}

# Terms BodyPartExamined may carry as they are (PS3.16 Annex L), besides the table's own.
DEFINED_TERMS = frozenset(
    {
        *KEYWORDS,
        *ANATOMIC_REGION_CODES.values(),
        "SKULL",
        "LUNG",
        "ARM",
        "LEG",
        "FOREARM",
        "HUMERUS",
        "FEMUR",
        "CLAVICLE",
        "TIBIA",
        "FIBULA",
        "RADIUS",
        "ULNA",
        "SCAPULA",
        "SACRUM",
        "COCCYX",
        "HEADNECK",
        "CHESTABDOMEN",
        "CHESTABDPELVIS",
        "ABDOMENPELVIS",
        "WHOLEBODY",
        "IAC",
        "ORBIT",
        "SELLA",
        "TMJ",
        "THUMB",
        "FINGER",
        "TOE",
        "HEEL",
        "CALCANEUS",
        "SPINE",
    }
)


@dataclass(frozen=True)
class BodyPartOverride:
    """A site's rule: series from this station / caller / protocol show ``body_part``.

    Every condition given must hold; station and AE title compare case-insensitively,
    ``protocol`` is a regular expression searched in Protocol Name and Series Description.
    """

    body_part: str
    station_name: str | None = None
    calling_ae_title: str | None = None
    protocol: str | None = None

    def matches(
        self, station_name: str, calling_ae_title: str, protocol_name: str, description: str
    ) -> str | None:
        """The conditions that matched, in words, or None."""
        said = []
        if self.station_name is not None:
            if station_name.strip().upper() != self.station_name.strip().upper():
                return None
            said.append(f"Station Name {station_name!r}")
        if self.calling_ae_title is not None:
            if calling_ae_title.strip().upper() != self.calling_ae_title.strip().upper():
                return None
            said.append(f"calling AE title {calling_ae_title!r}")
        if self.protocol is not None:
            pattern = re.compile(self.protocol)
            if not (pattern.search(protocol_name) or pattern.search(description)):
                return None
            said.append(f"protocol /{self.protocol}/")
        return " and ".join(said) or None


@dataclass(frozen=True)
class BodyPartEvidence:
    """The resolved body part ('' when nothing said), which evidence decided, and its detail."""

    body_part: str
    source: str = ""  # "override", "AnatomicRegionSequence", "BodyPartExamined", an attribute
    detail: str = ""

    def describe(self) -> str:
        if not self.body_part:
            return "body part unknown (no override, anatomic region, BodyPartExamined or keyword)"
        return f"body part {self.body_part} from {self.source} {self.detail}".rstrip()


def fold(text: str) -> str:
    """Lower case without accents: 'Schädel' → 'schadel', 'crâne' → 'crane', 'ß' → 'ss'."""
    return "".join(_fold_char(ch) for ch in text)


@cache
def _fold_char(ch: str) -> str:
    decomposed = unicodedata.normalize("NFKD", ch.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@cache
def _keyword_patterns() -> tuple[tuple[re.Pattern[str], str], ...]:
    patterns = []
    for body_part, words in KEYWORDS.items():
        for word in words:
            stem = word.rstrip("*")
            body = r"[^a-z0-9]+".join(re.escape(part) for part in stem.split())
            tail = "" if word.endswith("*") else r"(?![a-z0-9])"
            patterns.append((re.compile(rf"(?<![a-z0-9]){body}{tail}"), body_part))
    return tuple(patterns)


def keyword_body_part(text: str) -> tuple[str, str] | None:
    """(body part, the matching word as the text spells it) for the first keyword in ``text``."""
    if not text:
        return None
    folded_chars = [_fold_char(ch) for ch in text]
    folded = "".join(folded_chars)
    origin = [index for index, part in enumerate(folded_chars) for _ in part]
    best: tuple[int, int, str] | None = None  # (start, -length, body part)
    for pattern, body_part in _keyword_patterns():
        match = pattern.search(folded)
        if match is None:
            continue
        candidate = (match.start(), match.start() - match.end(), body_part)
        if best is None or candidate[:2] < best[:2]:
            best = candidate
    if best is None:
        return None
    start, end = origin[best[0]], origin[best[0] - best[1] - 1] + 1
    return best[2], text[start : _word_end(text, end)].lower()


def _word_end(text: str, end: int) -> int:
    """Extend a prefix match to the end of its word, so the reason quotes the whole word."""
    while end < len(text) and text[end].isalnum():
        end += 1
    return end


def region_body_part(regions: Sequence[AnatomicRegion]) -> tuple[str, AnatomicRegion] | None:
    for scheme, value, meaning in regions:
        if scheme in SNOMED_SCHEMES or not scheme:
            body_part = ANATOMIC_REGION_CODES.get(value)
            if body_part:
                return body_part, (scheme, value, meaning)
    for scheme, value, meaning in regions:  # an unknown code: its meaning may still say it
        found = keyword_body_part(meaning)
        if found:
            return found[0], (scheme, value, meaning)
    return None


def resolve_body_part(
    *,
    body_part_examined: str = "",
    anatomic_regions: Sequence[AnatomicRegion] = (),
    series_description: str = "",
    protocol_name: str = "",
    study_description: str = "",
    station_name: str = "",
    calling_ae_title: str = "",
    overrides: Sequence[BodyPartOverride] = (),
) -> BodyPartEvidence:
    """The series' body part and the evidence that decided it (see the module docstring)."""
    for override in overrides:
        matched = override.matches(
            station_name, calling_ae_title, protocol_name, series_description
        )
        if matched:
            return BodyPartEvidence(override.body_part.upper(), "site override", f"({matched})")
    region = region_body_part(anatomic_regions)
    if region:
        scheme, value, meaning = region[1]
        return BodyPartEvidence(
            region[0], "AnatomicRegionSequence", f"code {scheme}:{value} ({meaning})"
        )
    examined = body_part_examined.strip().upper()
    if examined in DEFINED_TERMS:
        return BodyPartEvidence(examined, "BodyPartExamined", f"{examined!r}")
    if examined:
        found = keyword_body_part(body_part_examined)
        if found:
            return BodyPartEvidence(
                found[0], "BodyPartExamined", f"{body_part_examined.strip()!r} (keyword)"
            )
    for attribute, text in (
        ("SeriesDescription", series_description),
        ("ProtocolName", protocol_name),
        ("StudyDescription", study_description),
    ):
        found = keyword_body_part(text)
        if found:
            return BodyPartEvidence(found[0], attribute, f"keyword {found[1]!r}")
    return BodyPartEvidence("")
