"""The generated studies ``pacsflow demo`` sends through Orthanc (pure: builds datasets).

Each is a phantom with a known ground truth, so the demo table shows what was drawn beside
what the (demo) model found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.phantoms.base import PhantomStudy


@dataclass(frozen=True)
class DemoStudy:
    description: str
    phantom: PhantomStudy

    @property
    def study_instance_uid(self) -> str:
        return self.phantom.study_instance_uid

    @property
    def accession_number(self) -> str:
        return self.phantom.accession_number


def demo_studies() -> list[DemoStudy]:
    """One study per analyzer and then some: normal and Critical chest, wrist fracture, brain
    tumour on a 200-slice MRI, subdural hemorrhage on head CT, acute stroke on head CT, type A
    aortic dissection on CT angiography."""
    from models.phantoms import demo_studies as phantoms

    studies = []
    for phantom in phantoms():
        first = phantom.datasets[0]
        description = str(first.get("StudyDescription", "") or first.get("Modality", ""))
        studies.append(DemoStudy(f"{description} ({len(phantom.datasets)} images)", phantom))
    return studies
