"""The municipality CA, the cluster CSR and chain verification, with real X.509 (cryptography)."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kommunmoln.tier_b import ca, softhsm

NAME = "Exempelkommun CloudHSM issuing CA"


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_csr(common_name: str = "HSM:1234:PARTN:0, for FIPS mode") -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def issuing() -> ca.IssuingCa:
    return ca.create_issuing_ca(NAME, organization="Exempelkommun", key_type="p384")


@pytest.fixture(scope="module")
def csr_pem() -> str:
    return make_csr()


def test_workshop_ca_is_a_constrained_issuing_ca() -> None:
    # GIVEN / WHEN a default (RSA 3072) workshop CA
    made = ca.create_issuing_ca(NAME)
    cert = made.certificate
    # THEN it is self-signed, CA:TRUE with path length 0, and may only sign certificates and CRLs
    assert cert.issuer == cert.subject
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert isinstance(made.private_key, rsa.RSAPrivateKey) and made.private_key.key_size == 3072
    # AND the private key never shows in repr
    assert "private_key" not in repr(made)


def test_ca_files_are_written_0600_and_never_overwritten(issuing: ca.IssuingCa, tmp_path: Path) -> None:
    cert_path, key_path = ca.write_ca(issuing, tmp_path / "ca")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert cert_path.name == "customerCA.crt"
    with pytest.raises(ca.CertificateError, match="refusing to overwrite"):
        ca.write_ca(issuing, tmp_path / "ca")
    loaded = ca.load_ca(cert_path, key_path)
    assert loaded.certificate == issuing.certificate


def test_encrypted_key_needs_its_passphrase(issuing: ca.IssuingCa, tmp_path: Path) -> None:
    cert_path, key_path = ca.write_ca(issuing, tmp_path, passphrase=b"correct horse")
    assert b"ENCRYPTED" in key_path.read_bytes()
    with pytest.raises(ca.CertificateError, match="wrong passphrase"):
        ca.load_ca(cert_path, key_path, passphrase=b"wrong")
    assert ca.load_ca(cert_path, key_path, passphrase=b"correct horse").certificate == issuing.certificate


def test_key_that_does_not_belong_to_the_certificate_is_refused(issuing: ca.IssuingCa, tmp_path: Path) -> None:
    other = ca.create_issuing_ca("other", key_type="p384")
    cert_path, _ = ca.write_ca(issuing, tmp_path / "a")
    _, other_key = ca.write_ca(other, tmp_path / "b")
    with pytest.raises(ca.CertificateError, match="does not belong to the CA certificate"):
        ca.load_ca(cert_path, other_key)


def test_signed_cluster_certificate_chains_to_the_trust_anchor(issuing: ca.IssuingCa, csr_pem: str) -> None:
    signed = ca.sign_cluster_csr(csr_pem, issuing)
    checked = ca.verify_cluster_certificate(pem(signed), issuing.certificate_pem(), csr_pem=csr_pem)
    assert checked.subject == x509.load_pem_x509_csr(csr_pem.encode()).subject
    assert checked.not_valid_after_utc <= issuing.certificate.not_valid_after_utc


def test_wrong_ca_with_another_name_is_rejected(issuing: ca.IssuingCa, csr_pem: str) -> None:
    other = ca.create_issuing_ca("Grannkommun CA", key_type="p384")
    with pytest.raises(ca.CertificateError, match="not by the trust anchor"):
        ca.verify_cluster_certificate(pem(ca.sign_cluster_csr(csr_pem, other)), issuing.certificate_pem())


def test_wrong_ca_key_with_the_same_name_is_rejected(issuing: ca.IssuingCa, csr_pem: str) -> None:
    impostor = ca.create_issuing_ca(NAME, organization="Exempelkommun", key_type="p384")
    signed = ca.sign_cluster_csr(csr_pem, impostor)
    with pytest.raises(ca.CertificateError, match="signature does not verify"):
        ca.verify_cluster_certificate(pem(signed), issuing.certificate_pem())


def test_expired_certificate_is_rejected(issuing: ca.IssuingCa, csr_pem: str) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    signed = ca.sign_cluster_csr(csr_pem, issuing, days=1, now=past)
    with pytest.raises(ca.CertificateError, match="cluster certificate expired on"):
        ca.verify_cluster_certificate(pem(signed), issuing.certificate_pem())


def test_expired_ca_cannot_sign(csr_pem: str) -> None:
    old = ca.create_issuing_ca(NAME, key_type="p384", days=1, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=5))
    with pytest.raises(ca.CertificateError, match="issuing CA has expired"):
        ca.sign_cluster_csr(csr_pem, old)


def test_certificate_for_another_key_than_the_csr_is_rejected(issuing: ca.IssuingCa, csr_pem: str) -> None:
    signed = ca.sign_cluster_csr(make_csr("someone else"), issuing)
    with pytest.raises(ca.CertificateError, match="different public key than the cluster CSR"):
        ca.verify_cluster_certificate(pem(signed), issuing.certificate_pem(), csr_pem=csr_pem)


def test_trust_anchor_must_be_a_self_signed_ca(issuing: ca.IssuingCa, csr_pem: str) -> None:
    leaf = ca.sign_cluster_csr(csr_pem, issuing)
    with pytest.raises(ca.CertificateError, match="self-signed root"):
        ca.verify_cluster_certificate(pem(leaf), pem(leaf))


def test_garbage_inputs_give_clear_errors(issuing: ca.IssuingCa) -> None:
    with pytest.raises(ca.CertificateError, match="not a PEM certificate signing request"):
        ca.sign_cluster_csr("not a csr", issuing)
    with pytest.raises(ca.CertificateError, match="trust anchor is not a PEM"):
        ca.verify_cluster_certificate(issuing.certificate_pem(), "nope")
    with pytest.raises(ca.CertificateError, match="not supported"):
        ca.create_issuing_ca(NAME, key_type="rsa1024")


@pytest.mark.softhsm
@pytest.mark.skipif(not softhsm.available(), reason="SoftHSM2 or python-pkcs11 missing")
def test_csr_made_inside_a_softhsm_token_is_signed_and_verified(issuing: ca.IssuingCa) -> None:
    # GIVEN a CSR whose private key never left a PKCS#11 token, like the cluster's
    token_csr = softhsm.csr_from_softhsm("HSM:SOFT:PARTN:0, for FIPS mode")
    # WHEN signed by the municipality CA / THEN the chain verifies
    signed = ca.sign_cluster_csr(token_csr, issuing)
    ca.verify_cluster_certificate(pem(signed), issuing.certificate_pem(), csr_pem=token_csr)
