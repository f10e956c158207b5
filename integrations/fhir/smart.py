"""SMART Backend Services client authentication: the signed client assertion (pure).

A backend client proves its identity to the authorization server with a JWT it signs with
its private key (RFC 7523, as profiled by SMART App Launch 2.x "Backend Services"): header
``alg`` RS384 or ES384 and ``kid``; claims ``iss`` = ``sub`` = client ID, ``aud`` = the token
endpoint, ``exp`` at most five minutes ahead, and a unique ``jti``. The server answers an
access token for ``grant_type=client_credentials``.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = timedelta(minutes=5)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


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
    header = {"alg": algorithm, "typ": "JWT"}
    if key_id:
        header["kid"] = key_id
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": int((now + ASSERTION_LIFETIME).timestamp()),
        "iat": int(now.timestamp()),
        "jti": jti or uuid.uuid4().hex,
    }
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    ).encode("ascii")
    if algorithm == "RS384":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("RS384 needs an RSA private key")
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA384())
    elif algorithm == "ES384":
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
            raise ValueError("ES384 needs an EC P-384 private key")
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA384())))
        signature = r.to_bytes(48, "big") + s.to_bytes(48, "big")
    else:
        raise ValueError(f"unsupported signing algorithm {algorithm!r}")
    return signing_input.decode("ascii") + "." + _b64url(signature)
