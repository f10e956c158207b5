"""The one default rule table: a finding the defaults make Critical is escalated by the same
rule, and a finding they do not make Critical is not escalated by a default route."""

from __future__ import annotations

import pytest

from integrations.default_rules import DEFAULT_FINDING_RULES
from integrations.escalation.rules import route_finding
from integrations.settings import load_settings
from integrations.urgency import UrgencyRules, assess
from models.results import AnalysisResult, CodedConcept, Finding, ModelIdentity, UrgencyTier

MODEL = ModelIdentity("m", "1", "t", "0" * 64, clinical_use=False)
TEAMS = sorted({row.team for row in DEFAULT_FINDING_RULES if row.team})


def every_team_escalation():
    people = {"doc": {"name": "Dr Doc"}}
    teams = {team: {"on_call": [{"person": "doc"}]} for team in TEAMS}
    return load_settings(
        None, search=False, escalation={"people": people, "teams": teams}
    ).escalation


def default_tier(label: str, code: CodedConcept) -> tuple[UrgencyTier, str]:
    found = Finding(label, code, 0.9, 0.5, True, UrgencyTier.ROUTINE)
    assessment = assess(AnalysisResult("a", MODEL, "analysed", (found,)), UrgencyRules())
    return assessment.tier, assessment.rule


def test_every_critical_row_names_a_team_and_only_critical_rows_do():
    for row in DEFAULT_FINDING_RULES:
        assert (row.team is not None) == (row.tier == "Critical"), row.name


@pytest.mark.parametrize(
    ("label", "code"),
    [
        ("Subdural hemorrhage", "99TEST:SDH"),
        ("Mixed intracranial hemorrhage", "99TEST:MIX"),
        ("Tension pneumothorax", "99TEST:TPTX"),
        ("Acute ischemic stroke", "99TEST:STROKE"),
        ("Aortic dissection", "99TEST:AD"),
        ("Hemorrhage", "SCT:1386000"),  # matched by its code alone
        # the escalation copy routed these to neurosurgery while urgency left them Routine
        ("Gastrointestinal bleed", "99TEST:GIB"),
        ("Retinal hemorrhage", "99TEST:RH"),
        ("Pneumothorax", "99TEST:PTX"),
        ("Effusion", "99TEST:EFF"),
    ],
)
def test_urgency_and_escalation_defaults_agree(label, code):
    scheme, value = code.split(":")
    tier, rule = default_tier(label, CodedConcept(value, scheme, label))
    route = route_finding(every_team_escalation(), label, code)
    if tier is UrgencyTier.CRITICAL:
        assert route is not None and route.rule == rule
    else:
        assert route is None
