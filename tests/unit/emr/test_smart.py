"""SMART backend-services client assertions verify with the client's public key."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from integrations.fhir.smart import client_assertion

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
def test_assertion_is_signed_and_carries_the_smart_claims(algorithm: str) -> None:
    key = (
        rsa.generate_private_key(65537, 2048)
        if algorithm == "RS384"
        else ec.generate_private_key(ec.SECP384R1())
    )
    token = client_assertion(
        private_key_pem=pem(key),
        client_id="pacsflow",
        token_url="https://ehr.example.org/auth/token",
        algorithm=algorithm,
        key_id="key-1",
        now=NOW,
        jti="fixed",
    )
    header_b64, claims_b64, signature_b64 = token.split(".")
    header, claims = json.loads(decode(header_b64)), json.loads(decode(claims_b64))
    assert header == {"alg": algorithm, "typ": "JWT", "kid": "key-1"}
    assert claims["iss"] == claims["sub"] == "pacsflow"
    assert claims["aud"] == "https://ehr.example.org/auth/token"
    # dated 30 s back for clock skew; exp is five minutes after iat, under five from now
    assert int(NOW.timestamp()) - claims["iat"] == 30
    assert claims["exp"] - claims["iat"] == 300
    assert claims["exp"] - int(NOW.timestamp()) == 270
    assert claims["jti"] == "fixed"
    signed, signature = f"{header_b64}.{claims_b64}".encode(), decode(signature_b64)
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, signed, padding.PKCS1v15(), hashes.SHA384())
    else:
        assert len(signature) == 96
        der = encode_dss_signature(
            int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big")
        )
        public.verify(der, signed, ec.ECDSA(hashes.SHA384()))


def test_wrong_key_type_for_the_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="RS384 needs an RSA"):
        client_assertion(
            private_key_pem=pem(ec.generate_private_key(ec.SECP384R1())),
            client_id="c",
            token_url="https://x/token",
            algorithm="RS384",
            key_id="",
            now=NOW,
        )
