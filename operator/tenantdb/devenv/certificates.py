"""The dev control plane's PKI, made with ``cryptography``.

Owns: a self-signed CA, a serving certificate for loopback signed by it, the
``admin`` client certificate (group ``system:masters``), and the RSA key pair
that signs service-account tokens, all written as PEM files into one
directory. Every call makes fresh keys; nothing here is fit for production.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tenantdb.devenv import processes

SERVING_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
"""Names the serving certificate is valid for: loopback plus the in-cluster
names a client configured from a pod would use."""

SERVING_IPS = ("127.0.0.1", "10.0.0.1")
"""Loopback, and the first address of the service range (the ``kubernetes`` Service)."""

ADMIN_USER = "admin"
ADMIN_GROUP = "system:masters"
"""The group RBAC's bootstrap policy binds to cluster-admin."""

_CLOCK_SKEW = timedelta(hours=1)


@dataclass(frozen=True)
class CertificateFiles:
    """Where ``write_certificates`` puts each PEM file inside one directory."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """The CA certificate: clients trust it, the API server checks client certs with it."""
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA's private key (kept so more certificates can be signed later)."""
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        """The TLS certificate servers present on 127.0.0.1."""
        return self.directory / "serving.crt"

    @property
    def serving_key(self) -> Path:
        """The private key of ``serving_cert``."""
        return self.directory / "serving.key"

    @property
    def admin_cert(self) -> Path:
        """The client certificate of user ``admin`` in group ``system:masters``."""
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        """The private key of ``admin_cert``."""
        return self.directory / "admin.key"

    @property
    def service_account_key(self) -> Path:
        """The private key that signs service-account tokens."""
        return self.directory / "service-account.key"

    @property
    def service_account_public_key(self) -> Path:
        """The public key the API server verifies service-account tokens with."""
        return self.directory / "service-account.pub"


class _Issued(NamedTuple):
    """A certificate with its private key."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey


def write_certificates(
    directory: Path,
    *,
    valid_for: timedelta = timedelta(days=365),
    serving_ips: Sequence[str] = SERVING_IPS,
) -> CertificateFiles:
    """Make a fresh CA, serving cert, admin cert and token key pair in ``directory``.

    ``serving_ips`` are the addresses the serving certificate is valid for.
    Private keys are written 0600. Returns where each file is.
    """
    files = CertificateFiles(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = _certificate_authority(valid_for)
    serving = _issue(
        ca,
        _name("localhost"),
        valid_for,
        ExtendedKeyUsageOID.SERVER_AUTH,
        _serving_names(serving_ips),
    )
    admin = _issue(
        ca, _name(ADMIN_USER, ADMIN_GROUP), valid_for, ExtendedKeyUsageOID.CLIENT_AUTH, None
    )
    for issued, cert_path, key_path in (
        (ca, files.ca_cert, files.ca_key),
        (serving, files.serving_cert, files.serving_key),
        (admin, files.admin_cert, files.admin_key),
    ):
        _write_key(key_path, issued.key)
        cert_path.write_bytes(issued.cert.public_bytes(serialization.Encoding.PEM))
    token_key = _new_key()
    _write_key(files.service_account_key, token_key)
    files.service_account_public_key.write_bytes(
        token_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return files


def issue_client_certificate(
    files: CertificateFiles,
    user: str,
    group: str,
    name: str,
    *,
    valid_for: timedelta = timedelta(days=365),
) -> tuple[Path, Path]:
    """Sign a client certificate for ``user`` in ``group`` with the CA of ``files``.

    Written as ``<name>.crt`` and ``<name>.key`` beside the others (a kubelet,
    or the API server calling kubelets). Returns the certificate and key paths.
    """
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, rsa.RSAPrivateKey):
        raise TypeError(f"{files.ca_key} is not an RSA key")
    ca = _Issued(x509.load_pem_x509_certificate(files.ca_cert.read_bytes()), ca_key)
    issued = _issue(ca, _name(user, group), valid_for, ExtendedKeyUsageOID.CLIENT_AUTH, None)
    cert_path, key_path = files.directory / f"{name}.crt", files.directory / f"{name}.key"
    _write_key(key_path, issued.key)
    cert_path.write_bytes(issued.cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _new_key() -> rsa.RSAPrivateKey:
    """An RSA-2048 key: accepted by every Kubernetes component and TLS stack."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    """A subject; Kubernetes reads CN as the user name and O as a group."""
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _serving_names(ips: Sequence[str]) -> x509.SubjectAlternativeName:
    """The SANs of the serving cert (Go and OpenSSL ignore CN for host checks)."""
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in SERVING_DNS_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    return x509.SubjectAlternativeName(names)


def _builder(
    subject: x509.Name, issuer: x509.Name, valid_for: timedelta
) -> x509.CertificateBuilder:
    """The fields every certificate here shares; validity starts an hour back for clock skew."""
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + valid_for)
    )


def _certificate_authority(valid_for: timedelta) -> _Issued:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = _new_key()
    subject = _name("tenantdb-dev-ca")
    cert = (
        _builder(subject, subject, valid_for)
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issued(cert, key)


def _issue(
    ca: _Issued,
    subject: x509.Name,
    valid_for: timedelta,
    usage: x509.ObjectIdentifier,
    alternative_names: x509.SubjectAlternativeName | None,
) -> _Issued:
    """A leaf certificate for ``usage`` (server or client auth) signed by ``ca``."""
    key = _new_key()
    builder = (
        _builder(subject, ca.cert.subject, valid_for)
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if alternative_names is not None:
        builder = builder.add_extension(alternative_names, critical=False)
    return _Issued(builder.sign(ca.key, hashes.SHA256()), key)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """Key usage for a CA (signs certificates) or a TLS leaf (signs handshakes)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    """Write an unencrypted PKCS#8 PEM key, readable by its owner only."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    processes.write_private_file(path, pem)
