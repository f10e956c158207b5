"""SMART Backend Services client authentication: the signed client assertion (pure).

A backend client proves its identity to the authorization server with a JWT it signs with
its private key (RFC 7523, as profiled by SMART App Launch 2.x "Backend Services"): header
``alg`` RS384 or ES384 and ``kid``; claims ``iss`` = ``sub`` = client ID, ``aud`` = the token
endpoint, ``exp`` at most five minutes ahead, and a unique ``jti``. The server answers an
access token for ``grant_type=client_credentials``. PyJWT signs it.

Clocks differ a little: the assertion is dated ``CLOCK_SKEW_ALLOWANCE`` in the past (``iat``)
and lives five minutes from then, so a token server whose clock is up to that much behind ours
still sees ``exp`` within its five minutes (RFC 7523 leaves the leeway to the server; SMART's
five-minute ceiling on ``exp`` is kept from both clocks' point of view).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = timedelta(minutes=5)
CLOCK_SKEW_ALLOWANCE = timedelta(seconds=30)


def load_private_key(pem: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("the SMART private key must be an RSA or EC (P-384) key")
    return key


def client_assertion(
    *,
    private_key_pem: str,
    client_id: str,
    token_url: str,
    algorithm: str,
    key_id: str,
    now: datetime,
    jti: str | None = None,
) -> str:
    """The signed JWT (compact serialisation) for one token request."""
    key = load_private_key(private_key_pem)
    if algorithm == "RS384" and not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("RS384 needs an RSA private key")
    if algorithm == "ES384" and not (
        isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    ):
        raise ValueError("ES384 needs an EC P-384 private key")
    if algorithm not in ("RS384", "ES384"):
        raise ValueError(f"unsupported signing algorithm {algorithm!r}")
    issued = now - CLOCK_SKEW_ALLOWANCE
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": int((issued + ASSERTION_LIFETIME).timestamp()),
        "iat": int(issued.timestamp()),
        "jti": jti or uuid.uuid4().hex,
    }
    headers = {"typ": "JWT", **({"kid": key_id} if key_id else {})}
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)
