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


@pytest.mark.parametrize("worker", [{"count": 3}, {"count": 4, "express_workers": 2}])
def test_settings_environment_reproduces_the_settings_in_a_child(config, monkeypatch, worker):
    from integrations.settings import settings_environment

    parent = load_settings(config, study={"quiet_seconds": 7.5}, worker=worker)
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


def test_an_unknown_key_in_the_file_names_the_nearest_known_key(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('[node]\nae_titel = "X"\n\n[escalation]\nack_timeout_secnds = 60\n')
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    message = str(refused.value)
    assert "node.ae_titel: unknown key; did you mean 'node.ae_title'?" in message
    assert "did you mean 'escalation.ack_timeout_seconds'?" in message


def test_a_key_that_moved_says_where_it_lives_now(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text(
        '[acceptance]\npacs_rest_url = "http://10.1.2.3:8042"\npacs_node_alias = "pacsflow"\n'
    )
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    message = str(refused.value)
    assert "acceptance.pacs_rest_url: unknown key; moved to [pacs] rest_url" in message
    assert "acceptance.pacs_node_alias: unknown key; moved to [pacs] node_modality_id" in message


def test_an_unknown_section_in_the_file_is_refused(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("[worklst]\nroute = 'orm_o01'\n\n[dashboard]\nport = 8080\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    message = str(refused.value)
    assert "worklst: unknown section; did you mean 'worklist'?" in message
    assert "dashboard: unknown section" in message


@pytest.mark.parametrize(
    ("env", "named", "nearest"),
    [
        ("PACSFLOW_DASHBOARD__PORT", "unknown section 'dashboard'", "known: node, pacs"),
        ("PACSFLOW_WORKLST__ROUTE", "unknown section 'worklst'", "PACSFLOW_WORKLIST__ROUTE"),
        ("PACSFLOW_NODE__AE_TITEL", "unknown key 'node.ae_titel'", "PACSFLOW_NODE__AE_TITLE"),
        ("PACSFLOW_NODE_PORT", "not a pacsflow setting", "PACSFLOW_NODE__PORT"),
        ("PACSFLOW_FHIR_TOKN", "not a pacsflow setting", "PACSFLOW_FHIR_TOKEN"),
        (
            "PACSFLOW_ACCEPTANCE__PACS_REST_URL",
            "unknown key 'acceptance.pacs_rest_url'",
            "moved to [pacs] rest_url (PACSFLOW_PACS__REST_URL)",
        ),
        (
            "PACSFLOW_ESCALATION__WEBHOOK_SECRT",
            "unknown key 'escalation.webhook_secrt'",
            "PACSFLOW_ESCALATION__WEBHOOK_SECRET",
        ),
    ],
)
def test_an_unknown_environment_variable_stops_with_the_nearest_name(
    config, monkeypatch, env, named, nearest
):
    monkeypatch.setenv(env, "1")
    with pytest.raises(ConfigError) as refused:
        load_settings(config)
    message = str(refused.value)
    assert env in message and named in message and nearest in message


def test_the_other_pacsflow_variables_stay_valid(config, monkeypatch, tmp_path):
    monkeypatch.setenv("PACSFLOW_CONFIG", str(config))
    monkeypatch.setenv("PACSFLOW_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("PACSFLOW_FHIR_TOKEN", "t")  # [fhir] bearer_env's default
    monkeypatch.setenv("PACSFLOW_FHIR_PRIVATE_KEY", "k")
    monkeypatch.setenv("PACSFLOW_ESCALATION__WEBHOOK_SECRET", "s")
    monkeypatch.setenv("PACSFLOW_ESCALATION__TEAMS", "{}")  # a table given whole as JSON
    monkeypatch.setenv("PACSFLOW_NODE", '{"port": 11113}')  # a section given whole as JSON
    assert load_settings().node.port == 11113
    # a secret named by a *_env key is valid only while some setting names it (or by default)
    monkeypatch.setenv("PACSFLOW_SITE_FHIR_SECRET", "t")
    with pytest.raises(ConfigError, match="PACSFLOW_SITE_FHIR_SECRET"):
        load_settings()
    assert load_settings(fhir={"bearer_env": "PACSFLOW_SITE_FHIR_SECRET"}).fhir.auth == "none"
