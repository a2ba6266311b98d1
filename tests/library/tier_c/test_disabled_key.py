"""A key whose status in the key map is DISABLED: metadata says so, encrypt and decrypt are refused.

XKS Proxy API spec (aws/aws-kms-xksproxy-api-spec, xks_proxy_api_spec.md): GetKeyMetadata returns
`keyStatus` ENABLED or DISABLED, and the "Error codes" table answers 400 InvalidStateException when
"the specified external key or key store is disabled, deactivated or blocked" (KMS then reports the
key as not enabled in the external key manager).
"""

from __future__ import annotations

import base64

import pytest

from kommunmoln.tier_c import local

pytestmark = [
    pytest.mark.softhsm,
    pytest.mark.skipif(not local.available(), reason="SoftHSM2 is not installed (make system-deps)"),
]
META = {"awsPrincipalArn": "arn:aws:iam::111122223333:role/kommun-handlaggare", "kmsOperation": "Encrypt",
        "kmsKeyArn": "arn:aws:kms:eu-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "kmsRequestId": "disabled-1", "kmsViaService": "s3"}  # fmt: skip


def test_a_disabled_key_reports_disabled_and_refuses_encryption(tmp_path):
    # GIVEN the example keys, with the encrypt-only key set to status = "DISABLED" in the key map
    setup = local.make_setup(tmp_path / "xks")
    text = setup.config_path.read_text()
    label = 'label = "xks-inkorg-encrypt-only"'
    assert label in text
    setup.config_path.write_text(text.replace(label, label + '\nstatus = "DISABLED"'))
    body = {
        "requestMetadata": META,
        "plaintext": base64.b64encode(b"k" * 32).decode(),
        "encryptionAlgorithm": "AES_GCM",
    }
    with local.running_proxy(setup):
        # WHEN KMS asks for its metadata THEN it is reported DISABLED (still AES_256, its usage unchanged)
        status, metadata = local.call(setup, "/keys/inkorg-encrypt-only/metadata",
                                      {"requestMetadata": {**META, "kmsOperation": "DescribeKey"}})  # fmt: skip
        assert (status, metadata) == (200, {"keySpec": "AES_256", "keyUsage": ["ENCRYPT"], "keyStatus": "DISABLED"})
        # AND an encryption with it is refused with the spec's InvalidStateException
        status, refused = local.call(setup, "/keys/inkorg-encrypt-only/encrypt", body)
        assert (status, refused["errorName"]) == (400, "InvalidStateException")
        # AND an enabled key still works
        assert local.call(setup, "/keys/sekretess-s3-data/encrypt", body)[0] == 200
    assert "InvalidStateException" in (setup.root / "audit.jsonl").read_text()
