"""Urgency rules: defaults, manifest tiers, site rules per label and threshold, fired rule."""

from __future__ import annotations

import pytest

from integrations.settings import load_settings
from integrations.urgency import (
    FindingMatcher,
    UrgencyRules,
    apply_urgency,
    assess,
    finding_rules,
    fired_rule,
    rules_from_data,
)
from models.results import AnalysisResult, CodedConcept, Finding, ModelIdentity, UrgencyTier

MODEL = ModelIdentity("m", "1", "t", "0" * 64, clinical_use=False)


def finding(
    label: str,
    probability: float,
    *,
    tier: str = "Routine",
    threshold: float = 0.5,
    code: CodedConcept | None = None,
) -> Finding:
    return Finding(
        label=label,
        code=code or CodedConcept(label.upper(), "99TEST", label),
        probability=probability,
        threshold=threshold,
        present=probability >= threshold,
        tier=UrgencyTier(tier),
    )


def result(*findings: Finding, analyzer: str = "chest-xray") -> AnalysisResult:
    return AnalysisResult(analyzer=analyzer, model=MODEL, status="analysed", findings=findings)


DEFAULTS = UrgencyRules()


@pytest.mark.parametrize(
    ("label", "tier", "rule"),
    [
        ("Tension Pneumothorax", "Critical", "default:tension-pneumothorax"),
        ("Aortic dissection", "Critical", "default:aortic-dissection"),
        ("Intracranial hemorrhage", "Critical", "default:intracranial-hemorrhage"),
        ("Epidural hemorrhage", "Critical", "default:intracranial-hemorrhage"),
        ("Subdural hemorrhage", "Critical", "default:intracranial-hemorrhage"),
        ("Subarachnoid hemorrhage", "Critical", "default:intracranial-hemorrhage"),
        ("Intraparenchymal hemorrhage", "Critical", "default:intracranial-hemorrhage"),
        ("Intraventricular hemorrhage", "Critical", "default:intracranial-hemorrhage"),
        ("Mixed intracranial hemorrhage", "Critical", "default:intracranial-hemorrhage"),
        ("Acute ischemic stroke", "Critical", "default:acute-stroke"),
        ("Large vessel occlusion", "Critical", "default:acute-stroke"),
        ("Pneumothorax", "Urgent", "default:pneumothorax"),
        ("Fracture", "Urgent", "default:fracture"),
        ("Rib fracture", "Urgent", "default:fracture"),
        ("Mass", "Urgent", "default:mass"),
        ("Effusion", "Routine", "manifest:chest-xray"),
        ("Chronic infarct", "Routine", "manifest:chest-xray"),
    ],
)
def test_default_rules_give_each_present_finding_its_tier(label, tier, rule):
    assessment = assess(result(finding(label, 0.9)), DEFAULTS)
    assert assessment.tier == UrgencyTier(tier)
    assert assessment.rule == rule
    assert assessment.primary_finding == label


def test_absent_findings_are_routine_and_fire_no_rule():
    assessment = assess(result(finding("Tension Pneumothorax", 0.49)), DEFAULTS)
    assert assessment.tier is UrgencyTier.ROUTINE
    assert assessment.rule == "" and assessment.primary_finding == ""
    assert assessment.findings[0].present is False


def test_manifest_tier_stands_when_more_urgent_and_cannot_lower_a_default():
    # the manifest makes pneumothorax Critical: more urgent than the default, kept
    raised = assess(result(finding("Pneumothorax", 0.9, tier="Critical")), DEFAULTS)
    assert raised.tier is UrgencyTier.CRITICAL and raised.rule == "manifest:chest-xray"
    # the manifest says Routine for a hemorrhage: the default makes it Critical
    lowered = assess(result(finding("Subdural hemorrhage", 0.9, tier="Routine")), DEFAULTS)
    assert lowered.tier is UrgencyTier.CRITICAL
    assert lowered.rule == "default:intracranial-hemorrhage"
    # without the defaults the manifest decides alone
    manifest_only = assess(
        result(finding("Subdural hemorrhage", 0.9, tier="Urgent")), UrgencyRules(use_defaults=False)
    )
    assert manifest_only.tier is UrgencyTier.URGENT


def test_codes_match_whatever_the_label_says():
    code = CodedConcept("21454007", "SCT", "Subarachnoid hemorrhage")
    assessment = assess(result(finding("SAH", 0.9, code=code)), DEFAULTS)
    assert assessment.tier is UrgencyTier.CRITICAL


def test_site_rules_come_first_with_their_own_thresholds():
    rules = rules_from_data(
        [
            # a very confident pneumothorax is Critical at this site
            {
                "name": "big-ptx",
                "labels": ["pneumothorax"],
                "min_probability": 0.95,
                "tier": "Critical",
            },
            # the site reads nodules as routine work
            {"name": "nodule-routine", "labels": ["Nodule"], "tier": "Routine"},
            # a sensitive operating point for hemorrhage
            {
                "name": "ich-sensitive",
                "label_pattern": "hemorrhage",
                "min_probability": 0.3,
                "tier": "Critical",
            },
        ]
    )
    confident = assess(result(finding("Pneumothorax", 0.97)), rules)
    assert (confident.tier, confident.rule) == (UrgencyTier.CRITICAL, "site:big-ptx")
    # below the site threshold: the next rules apply (the default makes it Urgent)
    moderate = assess(result(finding("Pneumothorax", 0.7)), rules)
    assert (moderate.tier, moderate.rule) == (UrgencyTier.URGENT, "default:pneumothorax")
    nodule = assess(result(finding("Nodule", 0.9, tier="Urgent")), rules)
    assert (nodule.tier, nodule.rule) == (UrgencyTier.ROUTINE, "site:nodule-routine")
    # below the model's threshold (0.5) but above the site's (0.3): present at the site's point
    sensitive = assess(result(finding("Intracranial hemorrhage", 0.35)), rules)
    assert (sensitive.tier, sensitive.rule) == (UrgencyTier.CRITICAL, "site:ich-sensitive")
    assert sensitive.findings[0].present and sensitive.findings[0].threshold == 0.3
    assert sensitive.findings[0].model_threshold == 0.5


def test_site_rules_limited_to_analyzers():
    rules = rules_from_data(
        [{"name": "ct-only", "labels": ["Mass"], "analyzers": ["head-ct"], "tier": "Critical"}]
    )
    assert (
        assess(result(finding("Mass", 0.9), analyzer="head-ct"), rules).tier is UrgencyTier.CRITICAL
    )
    assert (
        assess(result(finding("Mass", 0.9), analyzer="chest-xray"), rules).tier
        is UrgencyTier.URGENT
    )


def test_study_tier_is_the_most_urgent_finding_and_its_rule():
    assessment = assess(
        result(
            finding("Mass", 0.99), finding("Tension Pneumothorax", 0.6), finding("Effusion", 0.9)
        ),
        DEFAULTS,
    )
    assert assessment.tier is UrgencyTier.CRITICAL
    assert assessment.primary_finding == "Tension Pneumothorax"
    assert assessment.rule == "default:tension-pneumothorax"


def test_apply_urgency_rewrites_tiers_and_records_the_rules_in_the_result():
    rules = rules_from_data(
        [
            {
                "name": "ich-sensitive",
                "label_pattern": "hemorrhage",
                "min_probability": 0.3,
                "tier": "Critical",
            }
        ]
    )
    original = result(
        finding("Intracranial hemorrhage", 0.35), finding("Fracture", 0.8), finding("Effusion", 0.1)
    )
    assert original.tier is UrgencyTier.ROUTINE
    applied = apply_urgency(original, rules)
    assert applied.tier is UrgencyTier.CRITICAL
    assert [f.label for f in applied.positive_findings] == ["Intracranial hemorrhage", "Fracture"]
    assert [f.tier for f in applied.positive_findings] == [UrgencyTier.CRITICAL, UrgencyTier.URGENT]
    assert fired_rule(applied) == "site:ich-sensitive"
    assert finding_rules(applied) == {
        "Intracranial hemorrhage": "site:ich-sensitive",
        "Fracture": "default:fracture",
        "Effusion": "",
    }
    # the record survives the JSON round trip the result store does
    again = AnalysisResult.from_json(applied.to_json())
    assert fired_rule(again) == "site:ich-sensitive" and again.tier is UrgencyTier.CRITICAL


def test_matchers_and_settings_refuse_bad_rules():
    with pytest.raises(ValueError):
        FindingMatcher()
    with pytest.raises(ValueError):
        FindingMatcher(codes=("36118008",))
    from integrations.errors import ConfigError

    with pytest.raises(ConfigError, match=r"urgency\.rules\.0"):
        load_settings(None, search=False, urgency={"rules": [{"name": "x", "tier": "Critical"}]})
    with pytest.raises(ConfigError, match="min_probability"):
        load_settings(
            None,
            search=False,
            urgency={
                "rules": [{"name": "x", "labels": ["a"], "tier": "Urgent", "min_probability": 2}]
            },
        )
    with pytest.raises(ConfigError, match="label_pattern"):
        load_settings(
            None,
            search=False,
            urgency={"rules": [{"name": "x", "label_pattern": "(", "tier": "Urgent"}]},
        )
    settings = load_settings(
        None,
        search=False,
        urgency={
            "rules": [{"name": "x", "labels": ["Nodule"], "tier": "Urgent"}],
            "use_default_rules": False,
        },
    )
    rules = settings.urgency.to_rules()
    assert [rule.qualified_name for rule in rules.site] == ["site:x"] and rules.defaults == ()
