"""Every generator of DICOM input images the project and its tests send (pure: datasets).

:data:`GENERATORS` names each generator variant (phantom kind, modality, view, encoding,
vendor, out-of-domain mutation, test sample) and builds it small; :func:`one_per_series`
keeps the first instance of every series, so that a conformance check sees each distinct
header set once (a localizer beside the axial slices, DWI beside ADC, every vendor series).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pydicom import Dataset

Build = Callable[[], list[Dataset]]


def one_per_series(datasets: list[Dataset]) -> list[Dataset]:
    seen: set[str] = set()
    firsts = []
    for ds in datasets:
        if str(ds.SeriesInstanceUID) not in seen:
            seen.add(str(ds.SeriesInstanceUID))
            firsts.append(ds)
    return firsts


def _chest(**kwargs: object) -> Build:
    def build() -> list[Dataset]:
        from models.phantoms.chest import chest_xray_study

        return chest_xray_study(11, ["Effusion"], size=128, **kwargs).datasets  # type: ignore[arg-type]

    return build


def _msk(body_part: str, **kwargs: object) -> Build:
    def build() -> list[Dataset]:
        from models.phantoms.msk import msk_study

        return msk_study(12, True, body_part=body_part, size=96, **kwargs).datasets  # type: ignore[arg-type]

    return build


def _brain(**kwargs: object) -> Build:
    def build() -> list[Dataset]:
        from models.phantoms.brain import brain_mri_study

        return brain_mri_study(13, True, slices=4, matrix=48, **kwargs).datasets  # type: ignore[arg-type]

    return build


def _head_ct(**kwargs: object) -> Build:
    def build() -> list[Dataset]:
        from models.phantoms.head_ct import head_ct_study

        return head_ct_study(14, ["Subdural hemorrhage"], slices=4, matrix=64, **kwargs).datasets  # type: ignore[arg-type]

    return build


def _ct_stroke() -> list[Dataset]:
    from models.phantoms.stroke import head_ct_stroke_study

    return head_ct_stroke_study(15, True, slices=4, matrix=64).datasets


def _mr_stroke(b_value_tag: str) -> Build:
    def build() -> list[Dataset]:
        from models.phantoms.stroke import brain_mri_stroke_study

        return brain_mri_stroke_study(
            16, True, slices=3, matrix=48, b_value_tag=b_value_tag
        ).datasets

    return build


def _aorta() -> list[Dataset]:
    from models.phantoms.aorta import cta_aorta_study

    return cta_aorta_study(17, "A", slices=4, matrix=64).datasets


def _vendor(vendor: str, multiframe: bool) -> Build:
    def build() -> list[Dataset]:
        from models.phantoms.vendor_mr import vendor_brain_mr_study

        return vendor_brain_mr_study(18, vendor, matrix=32, multiframe=multiframe).datasets  # type: ignore[arg-type]

    return build


def _out_of_domain(name: str, source: Build) -> Build:
    def build() -> list[Dataset]:
        from models.phantoms.ood import GENERATORS as OOD

        return OOD[name](one_per_series(source()), np.random.default_rng(19))

    return build


def _sample(**kwargs: object) -> Build:
    def build() -> list[Dataset]:
        from tests.dicom_samples import make_instance

        return [make_instance("conformance", **kwargs)]  # type: ignore[arg-type]

    return build


def _synthetic_chest() -> list[Dataset]:
    from tests.unit.results import synthetic

    return [synthetic.chest_radiograph()[0]]


def _synthetic_ct() -> list[Dataset]:
    from tests.unit.results import synthetic

    return synthetic.ct_series(slices=1)[0]


def _synthetic_multiframe() -> list[Dataset]:
    from tests.unit.results import synthetic

    return [synthetic.multiframe_image()[0]]


GENERATORS: dict[str, Build] = {
    "chest-dx-pa": _chest(),
    "chest-dx-ap-lateral": _chest(views=("AP", "LATERAL")),
    "chest-dx-monochrome1-voi-lut": _chest(photometric="MONOCHROME1", voi="lut"),
    "chest-dx-no-voi": _chest(voi="none"),
    "chest-cr": _chest(modality="CR"),
    "chest-cr-lateral": _chest(modality="CR", views=("PA", "LATERAL")),
    "chest-dx-rle": _chest(transfer_syntax="rle"),
    "chest-dx-jpeg-ls": _chest(transfer_syntax="jpeg-ls"),
    "chest-dx-jpeg2000": _chest(transfer_syntax="jpeg2000"),
    "msk-wrist": _msk("WRIST"),
    "msk-spine": _msk("LSPINE"),
    "msk-monochrome1": _msk("ANKLE", photometric="MONOCHROME1"),
    "brain-mr": _brain(),
    "brain-mr-enhanced": _brain(multiframe=True),
    "head-ct": _head_ct(),
    "head-ct-localizer-contrast": _head_ct(with_localizer=True, contrast=True),
    "head-ct-stroke": _ct_stroke,
    "brain-mr-stroke": _mr_stroke("standard"),
    "brain-mr-stroke-sequence": _mr_stroke("sequence"),
    "brain-mr-stroke-siemens": _mr_stroke("siemens"),
    "brain-mr-stroke-ge": _mr_stroke("ge"),
    "cta-aorta": _aorta,
    "vendor-mr-siemens": _vendor("siemens", False),
    "vendor-mr-philips": _vendor("philips", False),
    "vendor-mr-ge": _vendor("ge", False),
    "vendor-mr-philips-enhanced": _vendor("philips", True),
    "vendor-mr-siemens-enhanced": _vendor("siemens", True),
    "vendor-mr-ge-enhanced": _vendor("ge", True),
    "ood-noise-chest": _out_of_domain("noise", _chest()),
    "ood-inverted-msk": _out_of_domain("inverted_monochrome1", _msk("WRIST")),
    "ood-foreign-object-ct": _out_of_domain("foreign_object", _head_ct()),
    "ood-dark-fields-chest": _out_of_domain("plain_dark_fields", _chest()),
    "ood-other-body-part-mr": _out_of_domain("other_body_part", _brain()),
    "ood-other-body-part-chest": _out_of_domain("other_body_part", _chest()),
    "sample-dx": _sample(),
    "sample-cr": _sample(modality="CR"),
    "sample-ct": _sample(modality="CT", body_part="HEAD"),
    "sample-mg": _sample(modality="MG", body_part="BREAST"),
    "sample-mr": _sample(modality="MR", body_part=""),
    "synthetic-chest-dx": _synthetic_chest,
    "synthetic-head-ct": _synthetic_ct,
    "synthetic-multiframe-sc": _synthetic_multiframe,
}
