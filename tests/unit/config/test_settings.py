import pytest

from integrations.errors import ConfigError
from integrations.settings import load_settings

TOML = """
[node]
ae_title = "PACSFLOW"
port = 11112
storage_dir = "data"
allowed_callers = ["ORTHANC", { ae_title = "CT1", host = "10.0.0.5" }]

[study]
quiet_seconds = 3

[[routing.rules]]
name = "chest"
modality = ["DX"]
analyzers = ["chest-xray"]
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("PACSFLOW_"):
            monkeypatch.delenv(name)
    path = tmp_path / "site.toml"
    path.write_text(TOML)
    return path


def test_file_values_and_relative_paths(config):
    settings = load_settings(config)
    assert settings.node.storage_dir == config.parent / "data"
    assert settings.node.caller_policy()[1].host == "10.0.0.5"
    assert settings.analyzer_names() == ["chest-xray"]
    assert settings.config_path == config


def test_environment_overrides_a_key_and_keeps_the_rest(config, monkeypatch):
    monkeypatch.setenv("PACSFLOW_NODE__PORT", "11999")
    monkeypatch.setenv("PACSFLOW_NODE__ALLOWED_CALLERS", '["MODALITY"]')
    settings = load_settings(config)
    assert settings.node.port == 11999
    assert settings.node.ae_title == "PACSFLOW"
    assert settings.node.allowed_callers == ["MODALITY"]


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("PACSFLOW_NODE__PORT", "70000", "node.port"),
        ("PACSFLOW_NODE__AE_TITLE", "WAY-TOO-LONG-AE-TITLE", "node.ae_title"),
        ("PACSFLOW_STUDY__QUIET_SECONDS", "-1", "study.quiet_seconds"),
        ("PACSFLOW_DATABASE__URL", "mysql://x", "database.url"),
        ("PACSFLOW_NODE__AE_TITEL", "X", "node.ae_titel"),
        ("PACSFLOW_NODE__ON_CHANGED_DUPLICATE", "overwrite", "node.on_changed_duplicate"),
    ],
)
def test_a_wrong_value_names_the_key(config, monkeypatch, env, value, named):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(config)


def test_bad_routing_rule_is_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[routing.rules]]\nname = "x"\nprotocol = "(unclosed"\nanalyzers = ["a"]\n')
    with pytest.raises(ConfigError, match=r"routing\.rules\.0\.protocol"):
        load_settings(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_settings_environment_reproduces_the_settings_in_a_child(config, monkeypatch):
    from integrations.settings import settings_environment

    parent = load_settings(config, study={"quiet_seconds": 7.5}, worker={"count": 3})
    for name, value in settings_environment(parent).items():
        monkeypatch.setenv(name, value)
    child = load_settings()
    assert child.model_dump(exclude={"config_path"}) == parent.model_dump(exclude={"config_path"})


def test_a_changed_duplicate_keeps_the_first_unless_the_site_says_otherwise(config, monkeypatch):
    assert load_settings(config).node.on_changed_duplicate == "keep-first"
    monkeypatch.setenv("PACSFLOW_NODE__ON_CHANGED_DUPLICATE", "refuse")
    assert load_settings(config).node.on_changed_duplicate == "refuse"


def test_results_alert_team_must_be_an_escalation_team(config):
    with pytest.raises(ConfigError, match="alert_team 'pacs-admin' is not one of"):
        load_settings(config, results={"alert_team": "pacs-admin"})
    settings = load_settings(
        config,
        results={"alert_team": "pacs-admin"},
        escalation={
            "people": {"ops1": {"name": "Ops", "email": "ops1@hospital.test"}},
            "teams": {"pacs-admin": {"channels": ["email"], "on_call": [{"person": "ops1"}]}},
        },
    )
    assert settings.results.alert_team == "pacs-admin"
    assert settings.results.give_up_after_hours == 72.0
    assert settings.priors.timeout_seconds == 3.0
