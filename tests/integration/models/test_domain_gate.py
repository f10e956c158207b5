"""The input-domain gate of the committed demo packages, through the whole DICOM path.

Every out-of-domain study keeps the analyzer's own headers (modality, body part, view), so
only the image content is wrong: noise, another body part, the MONOCHROME1 mistake, a
foreign object, a plain image with two dark fields (the issue's "Enlarged cardiomediastinum
100 %" case). Without the gate these give findings; with it they are "not analysable" with
the score and limit, with no finding, no heatmap and nothing for the escalation to page.
Seeds 9_900_000 and up are used by neither the recipes, the domain fit nor other tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from integrations.urgency import UrgencyRules, UrgencyTier, assess
from models.domain import REASON_PREFIX
from models.domain_fit import DEMO_DOMAINS
from models.package_registry import PackageRegistry
from models.phantoms.chest import chest_xray_study
from models.phantoms.ood import GENERATORS

SEED = 9_900_000


def assert_refused(result: object, what: str) -> None:
    from models.results import AnalysisResult

    assert isinstance(result, AnalysisResult)
    assert result.status == "not_analysable", f"{what}: {result.status}, {result.findings[:3]}"
    assert result.reason is not None and result.reason.startswith(REASON_PREFIX), result.reason
    assert "limit" in result.reason or "intensity" in result.reason, result.reason
    assert not result.findings and not result.heatmaps, what
    assert assess(result, UrgencyRules()).tier is UrgencyTier.ROUTINE  # nothing to escalate


@pytest.mark.parametrize("analyzer_name", list(DEMO_DOMAINS))
def test_images_unlike_the_training_data_are_not_analysable(
    demo_registry: PackageRegistry, analyzer_name: str
) -> None:
    analyzer = demo_registry.get(analyzer_name)
    assert analyzer.package.domain is not None, "the demo package has no fitted domain"
    factory = DEMO_DOMAINS[analyzer_name][0]
    for offset, (name, generator) in enumerate(GENERATORS.items()):
        seed = SEED + 100 * offset
        study = generator(factory(seed), np.random.default_rng(seed))
        assert_refused(analyzer.analyze(study), f"{analyzer_name} / {name}")
    in_domain = analyzer.analyze(factory(SEED + 999))
    assert in_domain.status == "analysed", in_domain.reason
    assert in_domain.extra["domain"]["checked"] is True
    assert in_domain.extra["domain"]["max_score"] <= in_domain.extra["domain"]["limit"]


def test_plain_cr_with_two_dark_lung_fields_gets_no_confident_finding(
    demo_registry: PackageRegistry,
) -> None:
    """The issue's case: a plain generated CR with two dark lung fields, not a phantom."""
    analyzer = demo_registry.get("chest-xray")
    datasets = chest_xray_study(SEED + 5000, (), modality="CR", size=512).datasets
    plain = GENERATORS["plain_dark_fields"](datasets, np.random.default_rng(SEED + 5000))
    assert_refused(analyzer.analyze(plain), "plain CR")
    # and the same headers with the phantom's own pixels still read normally
    assert analyzer.analyze(datasets).status == "analysed"


def test_calibration_is_stored_in_the_package(demo_registry: PackageRegistry) -> None:
    for name in DEMO_DOMAINS:
        domain = demo_registry.get(name).manifest.domain
        assert domain is not None
        calibration = domain.calibration
        assert calibration["in_domain_false_rejection"] <= 0.05, (name, calibration)
        assert calibration["ood_detection"] >= 0.95, (name, calibration)
        assert set(calibration["per_set_detection"]) == set(GENERATORS)
