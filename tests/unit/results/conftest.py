"""Result-object tests run with pydicom's strict validation, as highdicom's own tests do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydicom import config

from integrations.settings import ResultsSettings
from tests.unit.results import synthetic

ALL_CARRIERS = ["sr", "gsps", "secondary_capture", "segmentation", "parametric_map"]


@pytest.fixture(autouse=True)
def strict_pydicom() -> Iterator[None]:
    reading, writing = (
        config.settings.reading_validation_mode,
        config.settings.writing_validation_mode,
    )
    config.settings.reading_validation_mode = config.RAISE
    config.settings.writing_validation_mode = config.RAISE
    try:
        yield
    finally:
        config.settings.reading_validation_mode = reading
        config.settings.writing_validation_mode = writing


@pytest.fixture
def profile() -> ResultsSettings:
    return ResultsSettings(carriers=ALL_CARRIERS)


@pytest.fixture
def chest() -> tuple:
    """(image, lesion mask, lesion, analysis) of a chest radiograph with a pneumothorax."""
    lesion = synthetic.Lesion((205.0, 78.0), (16.0, 12.0))
    image, mask = synthetic.chest_radiograph(lesion=lesion, patient_name="Müller^Jürgen")
    return image, mask, lesion, synthetic.chest_analysis(image, lesion)


@pytest.fixture
def head_ct() -> tuple:
    """(images, masks, lesion, analysis) of a head CT with a hemorrhage on slice 2."""
    lesion = synthetic.Lesion((40.0, 70.0), (9.0, 7.0))
    images, masks = synthetic.ct_series(lesion=lesion)
    return images, masks, lesion, synthetic.head_ct_analysis(images, lesion, diameter_mm=21.0)
