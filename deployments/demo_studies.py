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
    from models.phantoms.chest import chest_xray_study

    return [
        DemoStudy(
            "XR chest PA",
            chest_xray_study(
                9001, ["Tension Pneumothorax"], patient_id="DEMO-0001", accession_number="DEMO0001"
            ),
        ),
        DemoStudy(
            "XR chest PA",
            chest_xray_study(
                9002,
                ["Effusion", "Cardiomegaly"],
                patient_id="DEMO-0002",
                accession_number="DEMO0002",
            ),
        ),
        DemoStudy(
            "XR chest PA",
            chest_xray_study(9003, [], patient_id="DEMO-0003", accession_number="DEMO0003"),
        ),
    ]
