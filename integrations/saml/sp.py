"""The console as a SAML 2.0 service provider: metadata, AuthnRequest, signed assertions (I/O).

pysaml2 does the protocol; it signs and verifies XML by running Debian's ``xmlsec1``. Only a
response whose assertion is signed by the IdP in ``idp_metadata_file`` is accepted (and
audience, destination, validity window and, for SP-initiated logins, ``InResponseTo`` are
checked by pysaml2, with ``ACCEPTED_CLOCK_SKEW_SECONDS`` of leeway for the IdP's clock).
The person's groups come from ``group_attribute`` and map to roles through ``[rbac]``,
exactly as directory groups do.

IdP metadata that cannot be loaded (missing, unreadable, not metadata) does not stop the
console: single sign-on answers PeerUnavailableError until it loads, retried on each use.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import Config as Saml2Config
from saml2.metadata import create_metadata_string
from saml2.validate import ResponseLifetimeExceed, ToEarly

from integrations.errors import ConfigError, PeerRejectedError, PeerUnavailableError
from integrations.settings import SamlSettings

ACCEPTED_CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True)
class SamlUser:
    username: str
    display_name: str
    groups: tuple[str, ...]


def sp_config(settings: SamlSettings) -> Saml2Config:
    if not (settings.sp_entity_id and settings.acs_url and settings.idp_metadata_file):
        raise ConfigError("saml: sp_entity_id, acs_url and idp_metadata_file are required")
    config = Saml2Config()
    config.load(
        {
            "entityid": settings.sp_entity_id,
            "xmlsec_binary": settings.xmlsec_binary,
            "key_file": settings.sp_key_file or None,
            "cert_file": settings.sp_cert_file or None,
            "metadata": {"local": [settings.idp_metadata_file]},
            "allow_unknown_attributes": True,
            "accepted_time_diff": ACCEPTED_CLOCK_SKEW_SECONDS,
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [(settings.acs_url, BINDING_HTTP_POST)]
                    },
                    "want_assertions_signed": True,
                    "want_response_signed": False,
                    "authn_requests_signed": bool(settings.sp_key_file),
                    "allow_unsolicited": settings.allow_idp_initiated,
                    "name_id_format_allow_create": True,
                }
            },
        }
    )
    return config


class ServiceProvider:
    def __init__(self, settings: SamlSettings) -> None:
        if not (settings.sp_entity_id and settings.acs_url and settings.idp_metadata_file):
            raise ConfigError("saml: sp_entity_id, acs_url and idp_metadata_file are required")
        self.settings = settings
        self._client: Saml2Client | None = None
        # Request IDs we sent and not yet seen answered (SP-initiated logins).
        self._outstanding: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> Saml2Client:
        """pysaml2's client, loading the IdP metadata on first use (and again after a failure)."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = Saml2Client(config=sp_config(self.settings))
                except ConfigError:
                    raise
                except Exception as error:  # pysaml2 and OSError: the metadata is unusable
                    raise PeerUnavailableError(
                        f"the IdP metadata {self.settings.idp_metadata_file} cannot be loaded"
                        f" ({type(error).__name__}: {error})",
                        peer=self.settings.idp_metadata_file,
                    ) from None
            return self._client

    def metadata(self) -> str:
        config = self.client.config
        return create_metadata_string(None, config=config, valid=48, sign=False).decode()

    def login_redirect(self, relay_state: str) -> str:
        """The IdP URL (HTTP-Redirect binding) that starts a login."""
        request_id, info = self.client.prepare_for_authenticate(
            relay_state=relay_state, binding=BINDING_HTTP_REDIRECT
        )
        with self._lock:
            self._outstanding[request_id] = relay_state
            while len(self._outstanding) > 10000:  # bounded: drop the oldest
                self._outstanding.pop(next(iter(self._outstanding)))
        return str(dict(info["headers"])["Location"])

    def accept(self, saml_response: str) -> SamlUser:
        """The person a posted ``SAMLResponse`` vouches for; PeerRejectedError otherwise."""
        with self._lock:
            outstanding = dict(self._outstanding)
        client = self.client  # PeerUnavailableError while the IdP metadata cannot be loaded
        try:
            response = client.parse_authn_request_response(
                saml_response, BINDING_HTTP_POST, outstanding
            )
        except (ResponseLifetimeExceed, ToEarly) as error:
            raise PeerRejectedError(
                "SAML response refused: the assertion is outside its validity time"
                f" ({type(error).__name__}: {error}); check the IdP's and this node's clocks"
            ) from None
        except Exception as error:  # pysaml2 raises many types; all mean "not accepted"
            raise PeerRejectedError(f"SAML response refused: {type(error).__name__}") from None
        if response is None or response.assertion is None:
            raise PeerRejectedError("SAML response refused: no assertion")
        if not response.assertion.signature and not getattr(response, "signature_check", None):
            raise PeerRejectedError("SAML response refused: the assertion is not signed")
        with self._lock:
            self._outstanding.pop(response.in_response_to or "", None)
        identity = response.get_identity() or {}
        name_id = response.get_subject().text or ""
        username = (identity.get(self.settings.username_attribute) or [name_id])[0]
        display = (identity.get(self.settings.display_name_attribute) or [username])[0]
        groups = tuple(identity.get(self.settings.group_attribute) or ())
        if not username:
            raise PeerRejectedError("SAML response refused: no user name")
        return SamlUser(str(username), str(display), tuple(str(g) for g in groups))
