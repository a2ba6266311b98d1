"""The municipality's issuing CA and the CloudHSM cluster certificate (all with `cryptography`).

InitializeCluster takes the cluster's CSR signed by the customer's issuing CA plus that
CA's self-signed certificate (the trust anchor). Signing here, on the operator's machine,
keeps the CA private key out of AWS. Before anything is sent, `verify_cluster_certificate`
checks the chain the way the cluster will: signature, issuer/subject, validity, and that
the certified public key is the one in the CSR.

Workshops create a CA with `create_issuing_ca`; production signs with its existing CA.
Private keys never appear in `repr()`, logs or exception text; key files are written 0600
and never overwritten.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

KEY_TYPES = ("rsa3072", "p384")
CA_CERT_FILE = "customerCA.crt"  # the name the CloudHSM client expects under /opt/cloudhsm/etc
CA_KEY_FILE = "customerCA.key"
MAX_PEM_CHARS = 5000  # InitializeCluster limit for SignedCert and TrustAnchor

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class CertificateError(ValueError):
    """A CA, CSR or certificate problem, in one line that says what to do."""


@dataclass(frozen=True)
class IssuingCa:
    """A CA certificate and its private key (the key never shows in repr)."""

    certificate: x509.Certificate
    private_key: PrivateKey = field(repr=False)

    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm:
    return hashes.SHA384() if isinstance(key, ec.EllipticCurvePrivateKey) else hashes.SHA256()


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":")


def create_issuing_ca(
    common_name: str,
    *,
    organization: str = "",
    key_type: str = "rsa3072",
    days: int = 3650,
    now: dt.datetime | None = None,
) -> IssuingCa:
    """A self-signed issuing CA: CA:TRUE, path length 0, keyCertSign and cRLSign only."""
    if key_type not in KEY_TYPES:
        raise CertificateError(f"key type {key_type!r} is not supported; use one of {', '.join(KEY_TYPES)}")
    key: PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=3072)
        if key_type == "rsa3072"
        else ec.generate_private_key(ec.SECP384R1())
    )
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    name = x509.Name(attributes)
    start = _now(now) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _hash_for(key))
    )
    return IssuingCa(certificate=cert, private_key=key)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode`; never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise CertificateError(f"{path} already exists; refusing to overwrite CA material") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)  # the umask may have narrowed or widened nothing; be explicit


def write_ca(ca: IssuingCa, out_dir: Path, *, passphrase: bytes | None = None) -> tuple[Path, Path]:
    """Write customerCA.crt (0644) and customerCA.key (0600, PKCS#8; encrypted if a passphrase is given)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out_dir / CA_CERT_FILE, out_dir / CA_KEY_FILE
    for path in (cert_path, key_path):
        if path.exists():
            raise CertificateError(f"{path} already exists; refusing to overwrite CA material")
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    key_pem = ca.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    _write_new(key_path, key_pem, 0o600)
    _write_new(cert_path, ca.certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def load_certificate(pem: str | bytes, what: str = "certificate") -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except ValueError:
        raise CertificateError(f"the {what} is not a PEM X.509 certificate") from None


def load_csr(pem: str | bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem.encode() if isinstance(pem, str) else pem)
    except ValueError:
        raise CertificateError("the cluster CSR is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise CertificateError("the cluster CSR's signature is invalid: fetch the CSR again (DescribeClusters)")
    return csr


def load_ca(cert_path: Path, key_path: Path, *, passphrase: bytes | None = None) -> IssuingCa:
    """Load a CA and check that the key belongs to the certificate and that it may sign certificates."""
    cert = load_certificate(cert_path.read_bytes(), f"CA certificate {cert_path}")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=passphrase)
    except (ValueError, TypeError):
        raise CertificateError(f"cannot read the CA private key {key_path} (wrong passphrase or not PEM)") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertificateError(f"the CA private key {key_path} must be RSA or EC")
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise CertificateError(f"the private key {key_path} does not belong to the CA certificate {cert_path}")
    _require_ca(cert, "CA certificate")
    return IssuingCa(certificate=cert, private_key=key)


def _require_ca(cert: x509.Certificate, what: str) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise CertificateError(f"the {what} has no basicConstraints CA:TRUE; it cannot issue certificates") from None
    if not constraints.ca:
        raise CertificateError(f"the {what} is not a CA certificate (basicConstraints CA:FALSE)")


def sign_cluster_csr(
    csr_pem: str | bytes, ca: IssuingCa, *, days: int = 3650, now: dt.datetime | None = None
) -> x509.Certificate:
    """Issue the cluster certificate for the cluster's CSR (validity capped at the CA's)."""
    csr = load_csr(csr_pem)
    start = _now(now) - dt.timedelta(minutes=5)
    end = min(start + dt.timedelta(days=days), ca.certificate.not_valid_after_utc)
    if end <= _now(now):
        raise CertificateError("the issuing CA has expired; use a valid CA")
    return (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.certificate.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.certificate.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca.private_key, _hash_for(ca.private_key))
    )


def verify_cluster_certificate(
    cert_pem: str | bytes,
    trust_anchor_pem: str | bytes,
    *,
    csr_pem: str | bytes | None = None,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """Check the signed cluster certificate against the trust anchor (and the CSR). Raises CertificateError."""
    cert = load_certificate(cert_pem, "signed cluster certificate")
    anchor = load_certificate(trust_anchor_pem, "trust anchor")
    moment = _now(now)
    for text, what in ((cert_pem, "signed certificate"), (trust_anchor_pem, "trust anchor")):
        if len(text) > MAX_PEM_CHARS:
            raise CertificateError(
                f"the {what} PEM is longer than {MAX_PEM_CHARS} characters (InitializeCluster limit)"
            )
    if anchor.issuer != anchor.subject:
        raise CertificateError("the trust anchor must be a self-signed root certificate (issuer == subject)")
    try:
        anchor.verify_directly_issued_by(anchor)
    except (ValueError, TypeError, InvalidSignature):
        raise CertificateError("the trust anchor's self-signature does not verify") from None
    _require_ca(anchor, "trust anchor")
    if cert.issuer != anchor.subject:
        raise CertificateError(
            f"the cluster certificate was issued by '{cert.issuer.rfc4514_string()}', not by the trust anchor "
            f"'{anchor.subject.rfc4514_string()}': sign the CSR with the trust anchor's CA"
        )
    try:
        cert.verify_directly_issued_by(anchor)
    except (ValueError, TypeError, InvalidSignature):
        raise CertificateError(
            "the cluster certificate's signature does not verify with the trust anchor's key: it was signed by a "
            "different CA key with the same name"
        ) from None
    for which, c in (("trust anchor", anchor), ("cluster certificate", cert)):
        if moment < c.not_valid_before_utc:
            raise CertificateError(f"the {which} is not valid before {c.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
        if moment > c.not_valid_after_utc:
            raise CertificateError(f"the {which} expired on {c.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if csr_pem is not None:
        csr = load_csr(csr_pem)
        if _spki(csr.public_key()) != _spki(cert.public_key()):
            raise CertificateError(
                "the cluster certificate certifies a different public key than the cluster CSR: sign the CSR that "
                "DescribeClusters returns for this cluster"
            )
    return cert
