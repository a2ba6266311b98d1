"""The XKS proxy against the XKS Proxy API spec (aws/aws-kms-xksproxy-api-spec, xks_proxy_api_spec.md).

The proxy runs as `python -m usecases.external_key_store serve` on loopback against a fresh
SoftHSM2 token; every request is SigV4-signed as KMS signs it (host;x-amz-date, service
kms-xks-proxy). Expected status codes and error names are the spec's "Error codes" table.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from kommunmoln.tier_c import local
from kommunmoln.tier_c.app import ciphertext_data_integrity_value
from kommunmoln.tier_c.audit import verify_chain
from usecases import external_key_store

pytestmark = [
    pytest.mark.softhsm,
    pytest.mark.skipif(not local.available(), reason="SoftHSM2 is not installed (make system-deps)"),
]

PRINCIPAL = "arn:aws:iam::111122223333:role/kommun-handlaggare"
KEY_ARN = "arn:aws:kms:eu-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
AAD = b"kms-binds-this-context"


def meta(operation: str = "Encrypt", **extra) -> dict:
    return {
        "awsPrincipalArn": PRINCIPAL,
        "kmsKeyArn": KEY_ARN,
        "kmsOperation": operation,
        "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
        "kmsViaService": "s3",
        **extra,
    }


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    setup = local.make_setup(tmp_path_factory.mktemp("xks"), principals=("arn:aws:iam::111122223333:role/kommun-*",))
    with local.running_proxy(setup) as process:
        yield setup
    # uvicorn drains, runs lifespan shutdown (HSM sessions closed, audit synced), then re-raises SIGTERM.
    assert process.returncode in (0, -15)
    last = json.loads((setup.root / "audit.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "shutdown", "SIGTERM must end the proxy through its graceful shutdown"


def encrypt(proxy, key="sekretess-s3-data", plaintext=b"a 32-byte data key, for example.", **fields):
    body = {"requestMetadata": meta("GenerateDataKey"), "plaintext": b64(plaintext), "encryptionAlgorithm": "AES_GCM",
            "additionalAuthenticatedData": b64(AAD), **fields}  # fmt: skip
    return local.call(proxy, f"/keys/{key}/encrypt", body)


def decrypt_body(sealed: dict, aad: bytes = AAD, **fields) -> dict:
    return {"requestMetadata": meta("Decrypt"), "encryptionAlgorithm": "AES_GCM", "additionalAuthenticatedData": b64(aad),
            **{k: sealed[k] for k in ("ciphertext", "initializationVector", "authenticationTag")}, **fields}  # fmt: skip


# ---- valid requests -------------------------------------------------------------------------------
def test_encrypt_then_decrypt_round_trips_with_aad_and_a_12_byte_iv(proxy):
    status, sealed = encrypt(proxy)
    assert status == 200
    assert set(sealed) == {"ciphertext", "initializationVector", "authenticationTag"}
    assert len(base64.b64decode(sealed["initializationVector"])) == 12  # spec: IV exactly 96 bits
    assert len(base64.b64decode(sealed["authenticationTag"])) == 16
    assert len(base64.b64decode(sealed["ciphertext"])) == 32  # GCM: ciphertext as long as plaintext
    status, opened = local.call(proxy, "/keys/sekretess-s3-data/decrypt", decrypt_body(sealed))
    assert (status, base64.b64decode(opened["plaintext"])) == (200, b"a 32-byte data key, for example.")


def test_every_encryption_draws_a_fresh_iv(proxy):
    ivs = {encrypt(proxy)[1]["initializationVector"] for _ in range(5)}
    assert len(ivs) == 5


def test_cdiv_is_returned_and_matches_the_spec_formula(proxy):
    status, sealed = encrypt(proxy, ciphertextDataIntegrityValueAlgorithm="SHA_256")
    assert status == 200
    raw = {k: base64.b64decode(sealed[k]) for k in ("initializationVector", "ciphertext", "authenticationTag")}
    expected = ciphertext_data_integrity_value(
        AAD, b"", raw["initializationVector"], raw["ciphertext"], raw["authenticationTag"]
    )
    assert base64.b64decode(sealed["ciphertextDataIntegrityValue"]) == expected


def test_cdiv_formula_reproduces_the_spec_example():
    # Appendix C's worked example: 33 bytes AAD, 13 bytes metadata, IV, ciphertext, tag -> qHA/ImC9...
    aad = b"project=nile,department=marketing"
    value = ciphertext_data_integrity_value(
        aad, b"key_version=1", base64.b64decode("HMrlRw85cAJUd5Ax"), base64.b64decode("ghxkK1txeDNn3q8Y"),
        base64.b64decode("vBxN2ncH1oEkR8WVXpmyYQ=="),
    )  # fmt: skip
    assert b64(value) == "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc="


def test_metadata_reports_spec_usage_and_status_for_each_key(proxy):
    expected = {"sekretess-s3-data": ["ENCRYPT", "DECRYPT"], "inkorg-encrypt-only": ["ENCRYPT"],
                "arkiv-decrypt-only": ["DECRYPT"], "parkerad-neither": []}  # fmt: skip
    for key, usage in expected.items():
        status, body = local.call(proxy, f"/keys/{key}/metadata", {"requestMetadata": meta("DescribeKey")})
        assert (status, body) == (200, {"keySpec": "AES_256", "keyUsage": usage, "keyStatus": "ENABLED"})


def test_health_is_deep_and_reports_the_token(proxy):
    status, body = local.call(
        proxy, "/health", {"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "h"}}
    )
    assert status == 200
    assert body["xksProxyFleetSize"] >= 1 and body["ekmFleetDetails"][0]["healthStatus"] == "ACTIVE"
    assert "SoftHSM" in body["ekmFleetDetails"][0]["model"]


def test_second_credential_pair_is_accepted_for_rotation(proxy):
    status, _ = local.call(
        proxy, "/keys/sekretess-s3-data/metadata", {"requestMetadata": meta("DescribeKey")}, credential=1
    )
    assert status == 200


def test_unknown_kms_operation_is_not_rejected(proxy):
    # Spec: the proxy MUST NOT reject a request as invalid for a kmsOperation it does not know.
    body = {"requestMetadata": meta("BulkEncrypt"), "plaintext": b64(b"x"), "encryptionAlgorithm": "AES_GCM"}
    assert local.call(proxy, "/keys/sekretess-s3-data/encrypt", body)[0] == 200


# ---- invalid requests -----------------------------------------------------------------------------
def expect(result, status: int, name: str) -> None:
    assert result[0] == status, result
    assert result[1]["errorName"] == name
    assert (
        all(" " <= c <= "~" for c in result[1].get("errorMessage", "")) and len(result[1].get("errorMessage", "")) < 512
    )


def test_get_is_405(proxy):
    assert local.call(proxy, "/keys/sekretess-s3-data/encrypt", {}, method="GET")[0] == 405
    assert local.call(proxy, "/health", {}, method="GET")[0] == 405


def test_bad_signature_is_401(proxy):
    def flip_body(raw, headers):
        return raw.replace(b"GenerateDataKey", b"GenerateDataKeX"), headers

    status, _ = encrypt(proxy)
    assert status == 200
    body = {"requestMetadata": meta("GenerateDataKey"), "plaintext": b64(b"x"), "encryptionAlgorithm": "AES_GCM"}
    expect(
        local.call(proxy, "/keys/sekretess-s3-data/encrypt", body, tamper=flip_body),
        401,
        "AuthenticationFailedException",
    )


def test_wrong_service_name_and_wrong_region_are_401(proxy):
    body = {"requestMetadata": meta("DescribeKey")}
    expect(
        local.call(proxy, "/keys/sekretess-s3-data/metadata", body, service="kms"), 401, "AuthenticationFailedException"
    )
    expect(
        local.call(proxy, "/keys/sekretess-s3-data/metadata", body, region="eu-west-1"),
        401,
        "AuthenticationFailedException",
    )


def test_missing_signature_and_unknown_access_key_are_401(proxy):
    def strip(raw, headers):
        return raw, {k: v for k, v in headers.items() if k.lower() != "authorization"}

    def other_key(raw, headers):
        headers["Authorization"] = headers["Authorization"].replace(proxy.credentials[0][0], "A" * 24)
        return raw, headers

    body = {"requestMetadata": meta("DescribeKey")}
    for tamper in (strip, other_key):
        expect(
            local.call(proxy, "/keys/sekretess-s3-data/metadata", body, tamper=tamper),
            401,
            "AuthenticationFailedException",
        )


def test_stale_timestamp_is_401(proxy):
    from kommunmoln.tier_c import sigv4

    def old(raw, headers):
        url = proxy.base_url + "/keys/sekretess-s3-data/metadata"
        akid, secret = proxy.credentials[0]
        import datetime as dt
        from unittest import mock

        with mock.patch(
            "botocore.auth.get_current_datetime",
            return_value=dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=6),
        ):
            return raw, sigv4.sign(url=url, body=raw, access_key_id=akid, secret_access_key=secret, region=local.REGION)

    expect(local.call(proxy, "/keys/sekretess-s3-data/metadata", {"requestMetadata": meta("DescribeKey")}, tamper=old),
           401, "AuthenticationFailedException")  # fmt: skip


def test_unknown_key_is_404_and_bad_path_is_invalid_uri(proxy):
    expect(
        local.call(proxy, "/keys/no-such-key/metadata", {"requestMetadata": meta("DescribeKey")}),
        404,
        "KeyNotFoundException",
    )
    expect(
        local.call(proxy, "/keys/sekretess-s3-data/sign", {"requestMetadata": meta()}), 404, "InvalidUriPathException"
    )


def test_disallowed_operations_are_invalid_key_usage(proxy):
    expect(encrypt(proxy, key="arkiv-decrypt-only"), 400, "InvalidKeyUsageException")
    expect(encrypt(proxy, key="parkerad-neither"), 400, "InvalidKeyUsageException")
    status, sealed = encrypt(proxy, key="inkorg-encrypt-only")
    assert status == 200
    expect(
        local.call(proxy, "/keys/inkorg-encrypt-only/decrypt", decrypt_body(sealed)), 400, "InvalidKeyUsageException"
    )


def test_tampered_ciphertext_aad_or_metadata_is_invalid_ciphertext(proxy):
    _, sealed = encrypt(proxy)
    flipped = dict(
        sealed,
        ciphertext=b64(
            bytes([base64.b64decode(sealed["ciphertext"])[0] ^ 1]) + base64.b64decode(sealed["ciphertext"])[1:]
        ),
    )
    path = "/keys/sekretess-s3-data/decrypt"
    expect(local.call(proxy, path, decrypt_body(flipped)), 400, "InvalidCiphertextException")
    expect(local.call(proxy, path, decrypt_body(sealed, aad=b"other context")), 400, "InvalidCiphertextException")
    # AAD moved into ciphertextMetadata must not decrypt (the lengths are bound, spec Encrypt note).
    body = decrypt_body(sealed, aad=b"", ciphertextMetadata=b64(AAD[:20]))
    expect(local.call(proxy, path, body), 400, "InvalidCiphertextException")
    expect(
        local.call(proxy, path, decrypt_body(dict(sealed, initializationVector=b64(b"\0" * 16)))),
        400,
        "InvalidCiphertextException",
    )


def test_secondary_authorization_denies_principal_and_via_service(proxy):
    body = {"requestMetadata": meta("Encrypt", awsPrincipalArn="arn:aws:iam::999999999999:role/intruder"),
            "plaintext": b64(b"x"), "encryptionAlgorithm": "AES_GCM"}  # fmt: skip
    expect(local.call(proxy, "/keys/sekretess-s3-data/encrypt", body), 403, "AccessDeniedException")
    body["requestMetadata"] = meta("Encrypt", kmsViaService="ebs")
    expect(local.call(proxy, "/keys/sekretess-s3-data/encrypt", body), 403, "AccessDeniedException")


def test_oversized_fields_and_body(proxy):
    expect(encrypt(proxy, plaintext=b"x" * 4301), 501, "UnsupportedOperationException")
    assert encrypt(proxy, plaintext=b"x" * 4300)[0] == 200  # spec minimum: 4300 bytes of plaintext
    expect(encrypt(proxy, additionalAuthenticatedData=b64(b"a" * 8193)), 501, "UnsupportedOperationException")
    _, sealed = encrypt(proxy)
    expect(local.call(proxy, "/keys/sekretess-s3-data/decrypt", decrypt_body(sealed, ciphertextMetadata=b64(b"m" * 21))),
           400, "ValidationException")  # fmt: skip
    huge = json.dumps({"requestMetadata": meta(), "padding": "x" * 100_000}).encode()
    expect(local.call(proxy, "/keys/sekretess-s3-data/encrypt", huge), 501, "UnsupportedOperationException")


def test_malformed_json_and_missing_fields_are_validation_errors(proxy):
    path = "/keys/sekretess-s3-data/encrypt"
    expect(local.call(proxy, path, b"{not json"), 400, "ValidationException")
    expect(local.call(proxy, path, b"[]"), 400, "ValidationException")
    expect(
        local.call(proxy, path, {"requestMetadata": meta(), "encryptionAlgorithm": "AES_GCM"}),
        400,
        "ValidationException",
    )
    expect(local.call(proxy, path, {"requestMetadata": meta(), "plaintext": "***", "encryptionAlgorithm": "AES_GCM"}),
           400, "ValidationException")  # fmt: skip
    expect(local.call(proxy, path, {"requestMetadata": meta(), "plaintext": b64(b"x"), "encryptionAlgorithm": "AES_CBC"}),
           400, "ValidationException")  # fmt: skip
    no_request_id = {k: v for k, v in meta().items() if k != "kmsRequestId"}
    expect(local.call(proxy, path, {"requestMetadata": no_request_id, "plaintext": b64(b"x"), "encryptionAlgorithm": "AES_GCM"}),
           400, "ValidationException")  # fmt: skip


def test_kill_switch_refuses_the_next_request_and_revive_restores(proxy, capsys):
    assert encrypt(proxy)[0] == 200
    # The operator's one command, as a separate process without the SigV4 secrets in its environment.
    env = {k: v for k, v in proxy.env.items() if not k.startswith("XKS_SECRET")}
    killed = subprocess.run([sys.executable, "-m", "usecases.external_key_store", "kill", "--config", str(proxy.config_path),
                             "--key", "sekretess-s3-data"], env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert killed.returncode == 0 and "sekretess-s3-data" in killed.stdout, killed.stderr
    expect(encrypt(proxy), 400, "InvalidStateException")
    assert encrypt(proxy, key="inkorg-encrypt-only")[0] == 200  # only that key
    assert external_key_store.main(["kill", "--config", str(proxy.config_path), "--all"]) == 0
    expect(encrypt(proxy, key="inkorg-encrypt-only"), 400, "InvalidStateException")
    expect(local.call(proxy, "/health", {"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "k"}}),
           400, "InvalidStateException")  # fmt: skip
    assert external_key_store.main(["revive", "--config", str(proxy.config_path), "--all"]) == 0
    assert encrypt(proxy)[0] == 200


def test_unreadable_kill_switch_file_fails_closed(proxy):
    kill_file = proxy.root / "killswitch.json"
    kill_file.write_text("{broken")
    try:
        expect(encrypt(proxy), 400, "InvalidStateException")
    finally:
        kill_file.unlink()
    assert encrypt(proxy)[0] == 200


def test_audit_log_records_metadata_and_decisions_but_never_plaintext(proxy):
    secret_plaintext = b"NEVER-IN-THE-LOG-0123456789abcdef"
    encrypt(proxy, plaintext=secret_plaintext)
    text = (proxy.root / "audit.jsonl").read_text()
    assert b64(secret_plaintext) not in text and secret_plaintext.decode() not in text
    assert all(secret not in text for _, secret in proxy.credentials)
    records = [json.loads(line) for line in text.splitlines()]
    assert records[0]["event"] == "startup"
    ok = [r for r in records if r.get("operation") == "Encrypt" and r["status"] == 200][-1]
    assert ok["requestMetadata"]["kmsKeyArn"] == KEY_ARN and ok["requestMetadata"]["kmsViaService"] == "s3"
    assert ok["accessKeyId"] == proxy.credentials[0][0]
    denied = [r for r in records if r.get("errorName") == "AccessDeniedException"]
    assert denied and "secondary authorization" in denied[0]["reason"]
    assert verify_chain(proxy.root / "audit.jsonl") == (len(records), None)


def test_audit_chain_detects_an_edited_line(tmp_path):
    from kommunmoln.tier_c.audit import AuditLog

    log = AuditLog(tmp_path / "a.jsonl")
    for n in range(3):
        log.write({"n": n})
    log.close()
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace('"n":1', '"n":7')
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    assert verify_chain(tmp_path / "a.jsonl") == (3, 3)
