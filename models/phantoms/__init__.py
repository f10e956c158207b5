"""Generated DICOM studies with known ground truth, one generator per analyzer (pure).

Every generator returns a :class:`~models.phantoms.base.PhantomStudy`: real pydicom Datasets
with pixel data and file meta (write them with ``ds.save_as(path, enforce_file_format=True)``),
the set of labels present, lesion masks per label and image (and frame), and, for head CT,
the drawn haemorrhage volume. The same seed always gives the same pixels and UIDs.

* :func:`chest_xray_study` (``models.phantoms.chest``): DX/CR, PA/AP/lateral, 19 labels.
* :func:`msk_study` (``models.phantoms.msk``): extremity or spine, AP + lateral, fracture.
* :func:`brain_mri_study` (``models.phantoms.brain``): post-contrast T1, 200 slices, tumour.
* :func:`head_ct_study` (``models.phantoms.head_ct``): non-contrast CT, 40 slices, 5 bleeds.
* :func:`head_ct_stroke_study`, :func:`brain_mri_stroke_study` (``models.phantoms.stroke``):
  a hypodense MCA territory (and dense vessel) on CT; DWI b=0/b=1000 and ADC on MR.
* :func:`cta_aorta_study` (``models.phantoms.aorta``): CT angiography, Stanford A/B flap.
* :func:`demo_studies`: one or two of each, for ``make demo`` and end-to-end tests.
"""

from __future__ import annotations

from models.phantoms.aorta import cta_aorta_study
from models.phantoms.base import PhantomStudy
from models.phantoms.brain import brain_mri_study
from models.phantoms.chest import chest_xray_study
from models.phantoms.head_ct import head_ct_study
from models.phantoms.msk import msk_study
from models.phantoms.stroke import brain_mri_stroke_study, head_ct_stroke_study

__all__ = [
    "PhantomStudy",
    "brain_mri_stroke_study",
    "brain_mri_study",
    "chest_xray_study",
    "cta_aorta_study",
    "demo_studies",
    "head_ct_stroke_study",
    "head_ct_study",
    "msk_study",
]


def demo_studies(first_seed: int = 9001) -> list[PhantomStudy]:
    """A varied demo worklist: normal and critical chest, fracture, brain tumour, subdural,
    an acute stroke on head CT and a type A aortic dissection on CT angiography."""
    seed = first_seed
    return [
        chest_xray_study(
            seed, ["Tension Pneumothorax"], patient_id="DEMO-0001", accession_number="DEMO0001"
        ),
        chest_xray_study(
            seed + 1,
            ["Effusion", "Cardiomegaly"],
            patient_id="DEMO-0002",
            accession_number="DEMO0002",
        ),
        chest_xray_study(seed + 2, [], patient_id="DEMO-0003", accession_number="DEMO0003"),
        msk_study(
            seed + 3, True, body_part="WRIST", patient_id="DEMO-0004", accession_number="DEMO0004"
        ),
        brain_mri_study(seed + 4, True, patient_id="DEMO-0005", accession_number="DEMO0005"),
        head_ct_study(
            seed + 5, ["Subdural hemorrhage"], patient_id="DEMO-0006", accession_number="DEMO0006"
        ),
        head_ct_stroke_study(seed + 6, True, patient_id="DEMO-0007", accession_number="DEMO0007"),
        cta_aorta_study(seed + 7, "A", patient_id="DEMO-0008", accession_number="DEMO0008"),
    ]
