"""Streaming encryption and all-or-nothing decryption with the AWS Encryption SDK.

Format (docs/use-case-1.md explains the choices):
- algorithm suite AES_256_GCM_HKDF_SHA512_COMMIT_KEY: AES-256-GCM, HKDF-SHA512 key
  derivation, key commitment, no ECDSA signature. A signature would only prove that a
  holder of *a* wrapping key wrote the message; here only the municipality holds wrapping
  keys, and ECDSA costs about half the throughput (measured: docs/use-case-1.md);
- commitment policy REQUIRE_ENCRYPT_REQUIRE_DECRYPT: messages without key commitment are
  refused on decryption;
- frames of 1 MiB: the Python ESDK's per-frame overhead dominates below about 256 KiB.

The ESDK's streaming decryptor releases each frame's plaintext as soon as that frame
authenticates, before the end of the message is verified. So decryption writes into a
temporary file beside the destination (mode 0600) and renames it into place only after
the final frame and the end of the input have been read. On any failure the temporary file
is deleted and a `DecryptionError` with a one-line reason is raised.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import aws_encryption_sdk
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.exceptions import (
    ActionNotAllowedError,
    AWSEncryptionSDKClientError,
    CustomMaximumValueExceeded,
    DecryptKeyError,
    MasterKeyProviderError,
    NotSupportedError,
    UnknownIdentityError,
)
from aws_encryption_sdk.identifiers import Algorithm, ContentType
from aws_encryption_sdk.internal.formatting.deserialize import deserialize_header
from cryptography.exceptions import InvalidSignature, InvalidTag

from kommunmoln import names
from kommunmoln.tier_a.errors import ContextMismatchError, DecryptionError, EncryptionError, UsageError
from kommunmoln.tier_a.frames import FrameEncryptor, decrypt_frames
from kommunmoln.tier_a.outputs import AtomicFile, check_destination, is_stdio, open_input, stdout_spool

ALGORITHM = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
COMMITMENT_POLICY = CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
FRAME_LENGTH = 1024 * 1024
MAX_ENCRYPTED_DATA_KEYS = 8  # primary + escrow + room for rotation overlap; bounds header work
HEADER_PEEK_BYTES = 64 * 1024
RESERVED_CONTEXT_PREFIX = "aws-crypto-"
_MAX_CONTEXT_ENTRY = 1024


def esdk_client() -> aws_encryption_sdk.EncryptionSDKClient:
    return aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=COMMITMENT_POLICY, max_encrypted_data_keys=MAX_ENCRYPTED_DATA_KEYS
    )


def parse_context_items(items: list[str] | None, *, option: str = "--context") -> dict[str, str]:
    """`["k=v", ...]` -> dict. Refuses malformed items, duplicates and reserved keys."""
    context: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} {item!r} must look like key=value")
        if key.startswith(RESERVED_CONTEXT_PREFIX):
            raise UsageError(f"{option} key {key!r} is reserved by the AWS Encryption SDK")
        if key in context:
            raise UsageError(f"{option} names {key!r} twice")
        if len(key) > _MAX_CONTEXT_ENTRY or len(value) > _MAX_CONTEXT_ENTRY:
            raise UsageError(f"{option} {key!r} is too long (context is plaintext metadata, keep it short)")
        context[key] = value
    return context


def format_context(context: Mapping[str, str]) -> str:
    shown = {k: v for k, v in sorted(context.items()) if not k.startswith(RESERVED_CONTEXT_PREFIX)}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "(empty)"


# --- Headers -----------------------------------------------------------------------------
@dataclass(frozen=True)
class HeaderSummary:
    """What anyone (AWS included) can read from a message header without any key."""

    algorithm: str
    committing: bool
    encryption_context: dict[str, str]
    wrapping_keys: tuple[tuple[str, str], ...]  # (namespace, key name) per encrypted data key
    frame_length: int
    header_bytes: int


def key_name_from_key_info(key_info: bytes, encrypted_data_key: bytes) -> str:
    """The key name in an EDK's key info: raw AES appends tag bits, IV length and IV; RSA doesn't."""
    if len(key_info) >= 20:
        tag_bits, iv_len = struct.unpack(">II", key_info[-20:-12])
        if tag_bits == 128 and iv_len == 12:
            return key_info[:-20].decode("utf-8", "replace")
    return key_info.decode("utf-8", "replace")


def summarize_header(prefix: bytes) -> HeaderSummary:
    """Parse an ESDK header from the first bytes of a message (raises DecryptionError)."""
    try:
        header, raw = deserialize_header(io.BytesIO(prefix), MAX_ENCRYPTED_DATA_KEYS)
    except CustomMaximumValueExceeded:
        raise DecryptionError(f"message header has more than {MAX_ENCRYPTED_DATA_KEYS} encrypted data keys") from None
    except Exception:
        raise DecryptionError("not an AWS Encryption SDK message (or its header is cut short)") from None
    keys = tuple(
        (edk.key_provider.provider_id, key_name_from_key_info(edk.key_provider.key_info, edk.encrypted_data_key))
        for edk in sorted(
            header.encrypted_data_keys, key=lambda e: (e.key_provider.provider_id, e.key_provider.key_info)
        )
    )
    return HeaderSummary(
        algorithm=header.algorithm.name,
        committing=header.algorithm.is_committing(),
        encryption_context=dict(header.encryption_context),
        wrapping_keys=keys,
        frame_length=header.frame_length,
        header_bytes=len(raw),
    )


class _HeadRecorder(io.RawIOBase):
    """Passes reads through and keeps the first bytes, to explain failures from the header."""

    def __init__(self, source: BinaryIO, on_bytes: Callable[[int], None] | None = None) -> None:
        self._source = source
        self._on_bytes = on_bytes
        self.head = bytearray()
        self.total = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if len(self.head) < HEADER_PEEK_BYTES:
            self.head += data[: HEADER_PEEK_BYTES - len(self.head)]
        self.total += len(data)
        if self._on_bytes and data:
            self._on_bytes(len(data))
        return data


# --- Engine ------------------------------------------------------------------------------
ENGINE_FRAMES = "frames"  # ESDK header + key derivation, frames by kommunmoln.tier_a.frames
ENGINE_ESDK = "esdk"  # the ESDK's own stream for everything (the reference)
ENGINES = (ENGINE_FRAMES, ENGINE_ESDK)


def codec_engine(engine: str | None = None) -> str:
    """`engine`, else $KOMMUNMOLN_TIER_A_CODEC, else the frame engine; refuses unknown names."""
    chosen = engine or os.environ.get(names.ENV_TIER_A_CODEC) or ENGINE_FRAMES
    if chosen not in ENGINES:
        raise UsageError(f"{names.ENV_TIER_A_CODEC}={chosen!r} is not one of {', '.join(ENGINES)}")
    return chosen


def frames_can_decrypt(header) -> bool:
    """Whether kommunmoln.tier_a.frames reads this body: framed and unsigned (no footer to verify)."""
    return header.content_type == ContentType.FRAMED_DATA and header.algorithm.signing_algorithm_info is None


BodyDecryptor = Callable[[object, BinaryIO, BinaryIO], int]  # (ESDK decryptor, source after the header, sink)


def decrypt_body(decryptor, source: BinaryIO, sink: BinaryIO) -> int:
    """The framed body after the header an ESDK `decryptor` has parsed, authenticated and keyed.

    `source` is the stream the decryptor read the header from (it reads no further than the
    header); the key is the one the ESDK derived after unwrapping the data key.
    """
    header = decryptor.header
    if not frames_can_decrypt(header):
        raise DecryptionError("message body is not framed without a signature; use the ESDK engine")
    return decrypt_frames(source, sink, key=frame_key(decryptor), message_id=header.message_id,
                          frame_length=header.frame_length)  # fmt: skip


def frame_key(decryptor) -> bytes:
    """The frame key the ESDK derived (HKDF, key commitment checked) after reading the header."""
    return decryptor._derived_data_key


def _pump(stream, sink: BinaryIO, on_bytes: Callable[[int], None] | None = None) -> int:
    """Copy an ESDK stream into `sink` a frame at a time; returns the bytes copied."""
    copied = 0
    while chunk := stream.read(FRAME_LENGTH):
        sink.write(chunk)
        copied += len(chunk)
        if on_bytes:
            on_bytes(len(chunk))
    return copied


# --- Encryption --------------------------------------------------------------------------
def open_encryptor(source: BinaryIO, key_provider, encryption_context: Mapping[str, str], *, engine: str | None = None):
    """A stream encryptor over `source` with `read(n)` (both engines) and `readinto` (frames).

    With the frame engine the ESDK still generates and wraps the data key, builds and
    authenticates the header and derives the frame key (its `_prep_message`, run on an
    empty source); only the frames are written by kommunmoln.tier_a.frames.
    """
    encryptor = esdk_client().stream(
        mode="e",
        source=source if codec_engine(engine) == ENGINE_ESDK else io.BytesIO(b""),
        key_provider=key_provider,
        encryption_context=dict(encryption_context),
        algorithm=ALGORITHM,
        frame_length=FRAME_LENGTH,
    )
    if codec_engine(engine) == ENGINE_ESDK:
        return encryptor
    encryptor._prep_message()  # ESDK: data key, header, header authentication, derived key
    return FrameEncryptor(
        source,
        header=encryptor._header,
        header_bytes=bytes(encryptor.output_buffer),
        key=encryptor._derived_data_key,
        frame_length=encryptor._header.frame_length,
    )


def encrypt_stream(
    source: BinaryIO,
    sink: BinaryIO,
    key_provider,
    encryption_context: Mapping[str, str],
    *,
    on_bytes: Callable[[int], None] | None = None,
    engine: str | None = None,
) -> int:
    """Encrypt `source` into `sink` in frames; returns the ciphertext length.

    `on_bytes` is called with the number of ciphertext bytes written (progress).
    """
    written = 0
    try:
        encryptor = open_encryptor(source, key_provider, encryption_context, engine=engine)
        if isinstance(encryptor, FrameEncryptor):
            buffer = memoryview(bytearray(4 * FRAME_LENGTH))
            while n := encryptor.readinto(buffer):
                sink.write(buffer[:n])
                written += n
                if on_bytes:
                    on_bytes(n)
            return written
        written = _pump(encryptor, sink, on_bytes)
        encryptor.close()
    except MasterKeyProviderError as error:
        raise EncryptionError(f"cannot encrypt: {error}") from None
    except AWSEncryptionSDKClientError as error:
        raise EncryptionError(f"encryption failed: {type(error).__name__}: {error}") from None
    return written


def _checked_source(
    stack: contextlib.ExitStack,
    source_path: str | os.PathLike[str],
    dest_path: str | os.PathLike[str],
    *,
    overwrite: bool,
) -> BinaryIO:
    """Check the destination (before anything is read), then open the source on `stack`.

    Standard input is read, never closed.
    """
    if not is_stdio(dest_path):
        check_destination(dest_path, overwrite=overwrite, source=source_path)
    source = open_input(source_path)
    if not is_stdio(source_path):
        stack.enter_context(source)
    return source


def encrypt_file(
    source_path: str | os.PathLike[str],
    dest_path: str | os.PathLike[str],
    key_provider,
    encryption_context: Mapping[str, str],
    *,
    overwrite: bool = True,
    on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Encrypt a local file to a local file (written beside, then renamed; mode 0600).

    Either may be `-` (standard input / output). The destination rules are those of
    `kommunmoln.tier_a.outputs` (no symlinks or special files; replaced only with `overwrite`).
    """
    with contextlib.ExitStack() as stack:
        source = _checked_source(stack, source_path, dest_path, overwrite=overwrite)
        if is_stdio(dest_path):
            sink = sys.stdout.buffer
            size = encrypt_stream(source, sink, key_provider, encryption_context, on_bytes=on_bytes)
            sink.flush()
            return size
        handle, _ = stack.enter_context(AtomicFile(Path(dest_path), overwrite=overwrite))
        return encrypt_stream(source, handle, key_provider, encryption_context, on_bytes=on_bytes)
    raise AssertionError("unreachable")  # pragma: no cover


# --- Decryption --------------------------------------------------------------------------
@dataclass(frozen=True)
class DecryptResult:
    path: Path
    plaintext_bytes: int
    ciphertext_bytes: int
    encryption_context: dict[str, str]
    algorithm: str
    wrapping_keys: tuple[tuple[str, str], ...]


def _explain_failure(error: BaseException, stage: str, head: bytes, key_provider) -> str:
    """A one-line reason for a failed decryption (never key material)."""
    if stage == "header":
        if isinstance(error, ActionNotAllowedError):
            return "message uses an algorithm suite without key commitment; refused by policy"
        if isinstance(error, DecryptKeyError | MasterKeyProviderError | InvalidTag):
            try:
                summary = summarize_header(bytes(head))
            except DecryptionError:
                return "none of the message's data keys can be unwrapped with the given key"
            wrapped = ", ".join(f"{ns}/{name}" for ns, name in summary.wrapping_keys)
            mine = key_provider.describe() if hasattr(key_provider, "describe") else "the given key"
            if any(f"{ns}/{name}" in mine.split(", ") for ns, name in summary.wrapping_keys):
                return (
                    f"the message names key {mine} but does not authenticate with it: "
                    "the header was modified, or the key material differs from the one used to encrypt"
                )
            if isinstance(error, InvalidTag):
                return "message header failed authentication (tampered or corrupted)"
            return f"wrong key: the message is wrapped for {wrapped}; tried {mine}"
        if isinstance(error, CustomMaximumValueExceeded):
            return f"message has more than {MAX_ENCRYPTED_DATA_KEYS} encrypted data keys; refused"
        if isinstance(error, NotSupportedError | UnknownIdentityError):
            return "not an AWS Encryption SDK message"
        if isinstance(error, InvalidTag):
            return "message header failed authentication (tampered or corrupted)"
        if "commitment" in str(error).lower():
            return "key commitment check failed (tampered message or wrong key)"
        if "Header authorization failed" in str(error):
            return "message header failed authentication (tampered or corrupted)"
        if not head or len(head) < 18:
            return "not an AWS Encryption SDK message (input too short)"
        return "not an AWS Encryption SDK message, or its header is corrupted"
    if isinstance(error, InvalidTag):
        return "ciphertext failed authentication (tampered or corrupted); no output written"
    if isinstance(error, InvalidSignature):
        return "message signature does not verify (tampered or corrupted); no output written"
    return "message is truncated or corrupted; no output written"


def decrypt_to_file(
    source: BinaryIO,
    dest: str | os.PathLike[str],
    key_provider,
    *,
    expected_context: Mapping[str, str] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    overwrite: bool = True,
    engine: str | None = None,
    output_filter: Callable[[Any, BinaryIO], Any] | None = None,
    body: BodyDecryptor | None = None,
) -> DecryptResult:
    """Decrypt an ESDK message from `source` into `dest`, all or nothing.

    The ESDK always parses and authenticates the header and derives the key. The body is
    decrypted by kommunmoln.tier_a.frames when the engine is the frame engine and the
    message is framed with this project's suite (no signature); otherwise by the ESDK.
    `body` replaces `decrypt_body` for such messages when plaintext goes straight to the
    temporary file (no `output_filter` sink): kommunmoln.tier_a.ranged, frames fetched and
    decrypted in parallel into that file.

    `expected_context` entries must be present with equal values in the message's
    encryption context (checked before any plaintext is written). `on_bytes` is called
    with the number of ciphertext bytes read (progress).

    `output_filter(header, handle)`, when given, is called once the header authenticated and
    before any plaintext is written: it may raise to refuse the message (rollback check), and
    returns the sink plaintext goes to, an object with `write` and `finish() -> int` (the
    bytes it wrote to `handle`; e.g. removing size padding), or `handle` itself.
    """
    dest = Path(dest)
    recorder = _HeadRecorder(source, on_bytes)
    stage = "header"
    with AtomicFile(dest, overwrite=overwrite) as (handle, _tmp):
        try:
            decryptor = esdk_client().stream(mode="d", source=recorder, key_provider=key_provider)
            header = decryptor.header  # parses the header and unwraps the data key
            context = dict(header.encryption_context)
            _check_context(context, expected_context or {})
            sink = output_filter(header, handle) if output_filter else handle
            stage = "body"
            written = 0
            if codec_engine(engine) == ENGINE_FRAMES and header.algorithm == ALGORITHM and frames_can_decrypt(header):
                written = (body if body and sink is handle else decrypt_body)(decryptor, recorder, sink)
            else:
                written = _pump(decryptor, sink)
                if not hasattr(decryptor, "footer"):
                    raise DecryptionError("message ended before its final frame; no output written")
                decryptor.close()
            if sink is not handle:
                written = sink.finish()
            stage = "end"
            if recorder.read(1):
                raise DecryptionError("unexpected data after the end of the message; no output written")
        except (DecryptionError, UsageError):
            raise
        except (AWSEncryptionSDKClientError, InvalidTag, InvalidSignature, ValueError, struct.error, EOFError) as error:
            raise DecryptionError(_explain_failure(error, stage, bytes(recorder.head), key_provider)) from None
        summary_keys = tuple(
            (edk.key_provider.provider_id, key_name_from_key_info(edk.key_provider.key_info, edk.encrypted_data_key))
            for edk in header.encrypted_data_keys
        )
    return DecryptResult(
        path=dest,
        plaintext_bytes=written,
        ciphertext_bytes=recorder.total,
        encryption_context={k: v for k, v in context.items() if not k.startswith(RESERVED_CONTEXT_PREFIX)},
        algorithm=header.algorithm.name,
        wrapping_keys=summary_keys,
    )


def _check_context(found: Mapping[str, str], expected: Mapping[str, str]) -> None:
    for key, value in expected.items():
        if key not in found:
            raise ContextMismatchError(f"encryption context has no {key!r} (expected {key}={value}); refused")
        if found[key] != value:
            hint = " (the object was moved or renamed?)" if key.endswith((":key", ":bucket")) else ""
            raise ContextMismatchError(
                f"encryption context mismatch: {key}={found[key]!r} in the message, expected {value!r}{hint}"
            )


def decrypt_file(
    source_path: str | os.PathLike[str],
    dest_path: str | os.PathLike[str],
    key_provider,
    *,
    expected_context: Mapping[str, str] | None = None,
    overwrite: bool = True,
    on_bytes: Callable[[int], None] | None = None,
    output_filter: Callable[[Any, BinaryIO], Any] | None = None,
) -> DecryptResult:
    """Decrypt a local ESDK message into a file, all or nothing; either may be `-` (stdin / stdout).

    Standard output receives the plaintext only after the whole message authenticated
    (through a private 0600 spool file, see `outputs.stdout_spool`). `output_filter`: as
    for `decrypt_to_file` (e.g. removing size padding).
    """
    options = {"expected_context": expected_context, "on_bytes": on_bytes, "output_filter": output_filter}
    with contextlib.ExitStack() as stack:
        source = _checked_source(stack, source_path, dest_path, overwrite=overwrite)
        if is_stdio(dest_path):
            spool = stack.enter_context(stdout_spool())
            return decrypt_to_file(source, spool, key_provider, **options)
        return decrypt_to_file(source, dest_path, key_provider, overwrite=overwrite, **options)
    raise AssertionError("unreachable")  # pragma: no cover


def read_file_head(path: str | os.PathLike[str], limit: int = HEADER_PEEK_BYTES) -> bytes:
    """The first `limit` bytes of a file (of standard input for `-`, which are then read again)."""
    if is_stdio(path):
        return open_input(path).peek_head(limit)  # type: ignore[attr-defined]
    try:
        with open(path, "rb") as handle:
            return handle.read(limit)
    except FileNotFoundError:
        raise UsageError(f"input {path} does not exist") from None
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
