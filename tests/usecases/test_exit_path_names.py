"""The exit path for names (docs/use-case-1.md, section 6) followed literally on a bucket the client wrote.

The Python blocks of section 6 are executed as written: the ESDK content recipe decrypts
the bucket record and the long-name records, the `cryptography`-only names recipe maps
every stored key back to its plaintext name, and the padding recipe restores a file the
CLI uploaded with --pad. No kommunmoln code runs in the recipes.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from kommunmoln.tier_a import cli
from kommunmoln.tier_a.bucket_names import BUCKET_RECORD, LONG_NAME_PREFIX, RESERVED_PREFIX
from kommunmoln.tier_a.custody import CustodyOptions, open_custody
from kommunmoln.tier_a.keys import RawAesKey, write_key_file
from kommunmoln.tier_a.name_cipher import NameCipher
from tests.stored_names import stored_key
from tests.usecases.test_name_hiding import TREE, _upload_all, _write_tree

DOC = Path(__file__).resolve().parents[2] / "docs" / "use-case-1.md"


def _section_six_blocks() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## 6. Exit path", 1)[1].split("\n## 7.", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _decrypt_with_content_recipe(recipe: str, workdir: Path, body: bytes) -> bytes:
    (workdir / "object.bin").write_bytes(body)
    (workdir / "plain.out").unlink(missing_ok=True)
    exec(compile(recipe, "use-case-1.md#content", "exec"), {})  # noqa: S102 - the documented recipe itself
    return (workdir / "plain.out").read_bytes()


def test_names_recipe_decrypts_every_stored_key(s3, bucket, tmp_path, monkeypatch) -> None:
    content_recipe, names_recipe = _section_six_blocks()[:2]
    assert "AESSIV" in names_recipe and "aws_encryption_sdk" not in names_recipe
    # GIVEN a tree with long and non-ASCII names uploaded with encrypted names
    key_file = write_key_file(tmp_path / "municipality.key.json", RawAesKey.generate("kommunmoln", "exit"))
    with open_custody(CustodyOptions(key_file=str(key_file)), need_primary=True) as custody:
        _upload_all(s3, custody, bucket, _write_tree(tmp_path / "tree"))
    # WHEN the recipes run in a directory holding only the key file and what S3 returns
    workdir = tmp_path / "exit"
    workdir.mkdir()
    (workdir / "municipality.key.json").write_bytes(key_file.read_bytes())
    monkeypatch.chdir(workdir)

    def fetch(key: str) -> bytes:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    (workdir / "bucket-record.json").write_bytes(
        _decrypt_with_content_recipe(content_recipe, workdir, fetch(BUCKET_RECORD))
    )
    listed = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    namespace: dict = {}
    exec(compile(names_recipe, "use-case-1.md#names", "exec"), namespace)  # noqa: S102
    for key in listed:
        if key.startswith(LONG_NAME_PREFIX):
            digest = key[len(LONG_NAME_PREFIX) :]
            namespace["long_names"][digest] = _decrypt_with_content_recipe(content_recipe, workdir, fetch(key)).decode()
    # THEN every data object's stored key maps back to its plaintext name
    recovered = sorted(namespace["plain_name"](k) for k in listed if not k.startswith(RESERVED_PREFIX))
    assert recovered == sorted(TREE)
    assert any(k.startswith(LONG_NAME_PREFIX) for k in listed)  # the long-name path was exercised


def test_names_recipe_refuses_a_foreign_key(tmp_path, monkeypatch) -> None:
    # GIVEN the names recipe with some other bucket's name key
    _, names_recipe = _section_six_blocks()[:2]
    other = base64.b64encode(NameCipher.generate_key()).decode()
    (tmp_path / "bucket-record.json").write_text(json.dumps({"names": "encrypted", "name_key_b64": other}))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(names_recipe, "use-case-1.md#names", "exec"), namespace)  # noqa: S102
    # THEN a stored key written under another key does not decrypt (SIV authenticates)
    stored = NameCipher(NameCipher.generate_key()).encrypt_key("socialnamnden/anna.pdf").key
    with pytest.raises(InvalidTag):
        namespace["plain_name"](stored)


def test_padding_recipe_restores_a_padded_upload(s3, bucket, tmp_path, moto_endpoint, monkeypatch, capsys) -> None:
    content_recipe, _, padding_recipe = _section_six_blocks()[:3]
    # GIVEN a file uploaded through the CLI with --pad
    key_file = write_key_file(tmp_path / "municipality.key.json", RawAesKey.generate("kommunmoln", "exit-pad"))
    original = os.urandom(1000) + b"\x00\x80\x00"  # ends like padding would: the recipe must still be exact
    (tmp_path / "beslut.pdf").write_bytes(original)
    argv = ["--endpoint-url", moto_endpoint, "--key", str(key_file), "-q", "upload", "--pad"]
    assert cli.main([*argv, str(tmp_path / "beslut.pdf"), f"s3://{bucket}/arende/beslut.pdf"]) == 0
    stored = stored_key(s3, bucket, "arende/beslut.pdf", key_file)
    body = s3.get_object(Bucket=bucket, Key=stored)["Body"].read()
    assert len(body) > len(original) + 24  # padded to the Padmé length of 1004 bytes (1024)
    # WHEN the content recipe and then the padding recipe run on what S3 returns
    workdir = tmp_path / "exit"
    workdir.mkdir()
    (workdir / "municipality.key.json").write_bytes(key_file.read_bytes())
    monkeypatch.chdir(workdir)
    _decrypt_with_content_recipe(content_recipe, workdir, body)
    assert "'kommunmoln:padding': 'padme-v1'" in capsys.readouterr().out  # what tells the reader to unpad
    exec(compile(padding_recipe, "use-case-1.md#padding", "exec"), {})  # noqa: S102
    # THEN the file is exactly the original
    assert (workdir / "plain.out").read_bytes() == original
