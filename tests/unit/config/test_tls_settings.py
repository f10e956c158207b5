"""TLS settings of issue 14: a TLS port needs its certificate, key and (for client
certificates) its CAs; client TLS needs cert and key together; unknown keys still fail."""

from __future__ import annotations

import pytest

from integrations.errors import ConfigError
from integrations.settings import load_settings

FILES = {"tls_cert": "/etc/pacsflow/node.crt", "tls_key": "/etc/pacsflow/node.key"}


def test_tls_is_off_unless_a_tls_port_or_tls_is_set() -> None:
    settings = load_settings(None, search=False)
    assert settings.node.tls_port == 0 and settings.hl7.tls_port == 0
    assert not (settings.pacs.tls or settings.emr.tls or settings.ris.tls)
    assert settings.node.require_client_cert and settings.hl7.require_client_cert


@pytest.mark.parametrize("section", ["node", "hl7"])
def test_a_tls_port_needs_cert_key_and_the_client_cas(section: str) -> None:
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        load_settings(None, search=False, **{section: {"tls_port": 2762}})
    with pytest.raises(ConfigError, match="needs tls_ca"):
        load_settings(None, search=False, **{section: {"tls_port": 2762, **FILES}})
    anonymous = load_settings(
        None, search=False, **{section: {"tls_port": 2762, "require_client_cert": False, **FILES}}
    )
    assert getattr(anonymous, section).tls_port == 2762
    with pytest.raises(ConfigError, match="differ from port"):
        load_settings(
            None,
            search=False,
            **{section: {"port": 2762, "tls_port": 2762, "tls_ca": "/ca.pem", **FILES}},
        )


@pytest.mark.parametrize("section", ["pacs", "emr", "ris"])
def test_client_tls_takes_cert_and_key_together_and_no_unknown_keys(section: str) -> None:
    with pytest.raises(ConfigError, match="go together"):
        load_settings(None, search=False, **{section: {"tls": True, "tls_cert": "/a.crt"}})
    with pytest.raises(ConfigError):
        load_settings(None, search=False, **{section: {"tls": True, "tls_verify": False}})
    settings = load_settings(None, search=False, **{section: {"tls": True, **FILES}})
    assert getattr(settings, section).tls
