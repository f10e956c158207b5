"""Throwaway PKI for TLS tests, made at test time with ``cryptography`` (I/O: writes PEM files).

Two CAs: the site's (which signs the node, the PACS and a modality) and a rogue one (which
signs a client and a server nobody should trust). Server certificates name ``localhost`` and
``127.0.0.1``. Keys are RSA 2048 (what every DICOM peer here speaks) and unencrypted.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Identity:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # the site CA certificate (the trust anchor every peer is given)
    node: Identity  # the node's server (and client) certificate, from the site CA
    pacs: Identity  # Orthanc's, from the site CA
    modality: Identity  # a client certificate from the site CA
    rogue_ca: Path
    rogue_client: Identity  # a client certificate from the rogue CA
    rogue_server: Identity  # a server certificate from the rogue CA
    both_cas: Path  # both CA certificates in one file (a client that trusts the rogue too)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pacsflow tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write(folder: Path, stem: str, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> Identity:
    cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return Identity(cert_path, key_path)


def _ca(common_name: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = _key()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str, ca: x509.Certificate, ca_key: rsa.RSAPrivateKey
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = _key()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ca("pacsflow test site CA")
    rogue, rogue_key = _ca("rogue CA")
    ca_path, rogue_path, both = folder / "ca.crt", folder / "rogue-ca.crt", folder / "both-ca.crt"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    rogue_path.write_bytes(rogue.public_bytes(serialization.Encoding.PEM))
    both.write_bytes(ca_path.read_bytes() + rogue_path.read_bytes())
    return Pki(
        ca=ca_path,
        node=_write(folder, "node", *_leaf("PACSFLOW", ca, ca_key)),
        pacs=_write(folder, "pacs", *_leaf("ORTHANC", ca, ca_key)),
        modality=_write(folder, "modality", *_leaf("MODALITY", ca, ca_key)),
        rogue_ca=rogue_path,
        rogue_client=_write(folder, "rogue-client", *_leaf("INTRUDER", rogue, rogue_key)),
        rogue_server=_write(folder, "rogue-server", *_leaf("FAKEPACS", rogue, rogue_key)),
        both_cas=both,
    )
