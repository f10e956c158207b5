"""Settings of issue 10: body part overrides, and demo weights off by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrations.errors import ConfigError
from integrations.settings import load_settings

REPO = Path(__file__).resolve().parents[3]


def test_a_site_gets_no_demo_weights_and_the_demo_config_turns_them_on() -> None:
    site = load_settings(REPO / "deployments" / "site.example.toml", search=False)
    assert not site.models.build_demo_if_missing and not site.models.allow_non_clinical
    bare = load_settings(None, search=False)
    assert not bare.models.build_demo_if_missing and not bare.models.allow_non_clinical
    demo = load_settings(REPO / "pacsflow.toml", search=False)
    assert demo.models.build_demo_if_missing and demo.models.allow_non_clinical


def test_body_part_overrides_need_a_condition_and_a_valid_protocol() -> None:
    settings = load_settings(
        None,
        search=False,
        routing={"body_part_overrides": [{"calling_ae_title": "MR1", "body_part": "head"}]},
    )
    (override,) = settings.routing.to_overrides()
    assert (override.body_part, override.calling_ae_title) == ("HEAD", "MR1")
    with pytest.raises(ConfigError, match="needs station_name, calling_ae_title or protocol"):
        load_settings(None, search=False, routing={"body_part_overrides": [{"body_part": "HEAD"}]})
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        load_settings(
            None,
            search=False,
            routing={"body_part_overrides": [{"protocol": "(", "body_part": "HEAD"}]},
        )
