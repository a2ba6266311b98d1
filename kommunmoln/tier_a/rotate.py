"""`kommunmoln rotate`: re-encrypt stored objects under a new wrapping key, object by object.

    kommunmoln rotate --key NEW.json --key OLD.json s3://bucket/prefix/ [--dryrun] [--drop-key NS/NAME]

The first key (or the HSM key) encrypts; every further key only decrypts (kommunmoln.tier_a.custody).
For each current object version under the prefix:

1. One ranged GET reads the ESDK header. Its encrypted data keys name the wrapping keys
   (namespace/name). A message wrapped for exactly the encrypting keyring's keys (the new
   key, plus the escrow keys given) is already rotated and is skipped: this is what makes a
   run resumable, with no local state. A message wrapped for none of the given keys fails
   before any body byte is read. A message wrapped for a key that is neither kept nor given
   as an old key (say an escrow key left out of the command) is refused: rotation never
   drops a wrapping key silently (`--drop-key NS/NAME` retires one on purpose).
2. The object is streamed through the ESDK's decryptor into the ESDK's encryptor and up as
   a new version (PutObject, or a multipart upload with bounded memory): no plaintext on
   disk, none of it kept in memory beyond the parts in flight. The new message carries the
   old encryption context (it binds the bucket and the stored key, which do not change; a
   padding marker stays) plus `kommunmoln:rotated-from`, the message ID it replaces; the old
   message must bind this bucket and key, or it is refused. The new version carries the
   upload tag and goes through the validator like any upload.
3. The write is conditional on the object's ETag (S3 conditional writes, If-Match on
   PutObject and CompleteMultipartUpload): an object replaced meanwhile is not overwritten,
   the run reports it and a second run handles it. The upload is committed only after the
   whole old message authenticated; a failure or Ctrl-C aborts it, nothing is stored.

The bucket's control objects (`_kommunmoln/bucket`, the long-name records) are rotated first
by the same path, and the manifest (kommunmoln.tier_a.manifest) is rewritten under the new
key with each rotated object's new message ID and ETag, so rollback detection keeps working.
An object already rotated whose manifest entry still names the old message (a run that
died before the manifest was written) has its header authenticated once more and is
accepted only if its `kommunmoln:rotated-from` is the message the manifest records.

Older versions are not rewritten (S3 versions are immutable): they keep the old wrapping key
until lifecycle expires them, so the old key must be kept until then (docs/use-case-1.md).
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kommunmoln import names
from kommunmoln.tier_a.bucket_names import BUCKET_RECORD, RESERVED_PREFIX
from kommunmoln.tier_a.codec import (
    HEADER_PEEK_BYTES,
    RESERVED_CONTEXT_PREFIX,
    _explain_failure,
    esdk_client,
    summarize_header,
)
from kommunmoln.tier_a.custody import Custody
from kommunmoln.tier_a.errors import EXIT_FAILED, ContextMismatchError, DecryptionError, TierAError, UsageError
from kommunmoln.tier_a.manifest import (
    MANIFEST_KEY,
    Entry,
    Manifest,
    RollbackError,
    check_current,
    load_manifest,
    message_id_of,
    save_manifest,
)
from kommunmoln.tier_a.named_bucket import NamedBucket
from kommunmoln.tier_a.transfer import (
    MIB,
    S3ObjectStream,
    TransferSettings,
    _s3_error,
    list_objects,
    object_context,
    upload_stream,
)

ROTATED = "rotated"
ALREADY = "already-rotated"
WOULD = "would-rotate"
FAILED = "failed"
MANIFEST_FLUSH_EVERY = 200  # rotated objects between manifest writes (and always at the end)

KeyName = tuple[str, str]


def _names(pairs: Iterable[KeyName]) -> str:
    return ", ".join(f"{ns}/{name}" for ns, name in sorted(pairs)) or "none"


def parse_key_name(text: str) -> KeyName:
    """`NS/NAME` of --drop-key (the namespace is the part before the first '/')."""
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name:
        raise UsageError(f"--drop-key {text!r}: expected NAMESPACE/NAME, e.g. kommunmoln/escrow-rsa-0123abcd")
    return namespace, name


@dataclass(frozen=True)
class KeyPlan:
    """Which wrapping keys a rotated message has, and which it may lose."""

    target: frozenset[KeyName]  # the encrypting keyring: the new key and the escrow keys given
    held: frozenset[KeyName]  # every key given (they can unwrap)
    retiring: frozenset[KeyName]  # given as old keys, or named by --drop-key

    def decide(self, wrapped: Iterable[KeyName]) -> tuple[str, str]:
        """(status, reason) for a message wrapped for `wrapped`; status ROTATED means: rotate it."""
        wrapped = frozenset(wrapped)
        if wrapped == self.target:
            return ALREADY, f"already wrapped for {_names(wrapped)} only"
        if not wrapped & self.held:
            return FAILED, f"wrapped for {_names(wrapped)}: none of the given keys ({_names(self.held)}) unwraps it"
        kept_back = wrapped - self.target - self.retiring
        if kept_back:
            return FAILED, (
                f"rotation would drop wrapping key {_names(kept_back)}, which was not given as an old key "
                "(give its key, or --escrow-public-key, to keep it; --drop-key NS/NAME to retire it)"
            )
        return ROTATED, f"{_names(wrapped)} -> {_names(self.target)}"


def key_plan(custody: Custody, drop: Iterable[KeyName] = ()) -> KeyPlan:
    target = custody.encrypting_names()
    held = frozenset(
        (m.provider_id, m.key_id.decode("utf-8", "replace")) for m in custody.decrypting_keyring().master_keys
    )
    return KeyPlan(target, held | target, custody.decrypt_only_names() | frozenset(drop))


class DecryptedStream(io.RawIOBase):
    """The plaintext of an ESDK message read from `source`, frame by frame; EOF only once it all authenticated.

    Raises DecryptionError for anything that fails (a truncated message, a bad tag, bytes
    after the end): a reader that gets EOF has the whole, authenticated plaintext.
    """

    def __init__(self, source, keyring, *, bucket: str, key: str) -> None:
        self._source = source
        self._keyring = keyring
        self._done = False
        try:
            self._decryptor = esdk_client().stream(mode="d", source=source, key_provider=keyring)
            self.header = self._decryptor.header  # parses the header, unwraps the data key
        except TierAError:
            raise
        except Exception as error:
            raise DecryptionError(_explain_failure(error, "header", b"", keyring)) from None
        context = dict(self.header.encryption_context)
        for name, value in object_context(bucket, key).items():
            if context.get(name) != value:
                raise ContextMismatchError(
                    f"encryption context binds {name}={context.get(name)!r}, not {value!r} "
                    "(the object was copied or moved); refused"
                )
        self.encryption_context = {k: v for k, v in context.items() if not k.startswith(RESERVED_CONTEXT_PREFIX)}

    def rotated_context(self) -> dict[str, str]:
        """The new message's context: the old one, naming the message it replaces (authenticated)."""
        return {**self.encryption_context, names.CONTEXT_ROTATED_FROM: self.message_id}

    @property
    def message_id(self) -> str:
        return base64.b64encode(bytes(self.header.message_id)).decode("ascii")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._done:
            return 0
        try:
            data = self._decryptor.read(len(buffer))
            if not data:
                self._finish()
                return 0
        except TierAError:
            raise
        except Exception as error:  # the ESDK, cryptography (InvalidTag), a short read
            raise DecryptionError(_explain_failure(error, "body", b"", self._keyring)) from None
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def _finish(self) -> None:
        if not hasattr(self._decryptor, "footer"):
            raise DecryptionError("message ended before its final frame")
        self._decryptor.close()
        if self._source.read(1):
            raise DecryptionError("unexpected data after the end of the message")
        self._done = True


@dataclass
class ObjectResult:
    key: str  # stored key
    name: str  # plaintext name (the stored key when names are plain or unreadable)
    status: str
    reason: str
    stored_bytes: int = 0
    version_id: str | None = None


@dataclass
class Rotation:
    """One run over one bucket: what it needs, and the manifest updates it owes."""

    s3: Any
    custody: Custody
    bucket: str
    plan: KeyPlan
    settings: TransferSettings
    named: NamedBucket | None = None  # the CLI's name mapping (plaintext names <-> stored keys)
    manifest: Manifest = field(default_factory=Manifest)
    pending: dict[str, Entry] = field(default_factory=dict)
    dryrun: bool = False
    on_bytes: Callable[[int], None] | None = None

    def shown(self, stored_key: str) -> str:
        if self.named is None or stored_key.startswith(RESERVED_PREFIX):
            return stored_key
        try:
            return self.named.name(stored_key)
        except TierAError:
            return stored_key

    def _entry(self, stored_key: str) -> Entry | None:
        if self.manifest.etag is None or stored_key.startswith(RESERVED_PREFIX):
            return None  # no manifest in this bucket, or a control object (not recorded)
        return self.pending.get(stored_key) or self.manifest.entries.get(stored_key)

    def rotate(self, stored_key: str) -> ObjectResult:
        """Rotate one object (never raises TierAError: a failure is a result)."""
        name = self.shown(stored_key)
        try:
            return self._rotate(stored_key, name)
        except TierAError as error:
            return ObjectResult(stored_key, name, FAILED, str(error))

    def _rotate(self, key: str, name: str) -> ObjectResult:
        what = f"s3://{self.bucket}/{key}"
        try:
            head = self.s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{HEADER_PEEK_BYTES - 1}")
            prefix = head["Body"].read()
        except Exception as error:
            raise _s3_error(error, f"read of {what}") from None
        etag, version = head.get("ETag", ""), head.get("VersionId")
        total = int(str(head.get("ContentRange", "")).rpartition("/")[2] or len(prefix))
        status, reason = self.plan.decide(summarize_header(prefix).wrapping_keys)
        entry = self._entry(key)
        if status == ALREADY and entry is not None and message_id_of(prefix) != entry.message_id:
            return self._repair(key, name, version, etag, entry)
        if status != ROTATED:
            return ObjectResult(key, name, status, reason, total, version)
        if self.dryrun:
            return ObjectResult(key, name, WOULD, reason, total, version)
        stream = self._open(key, version, etag)
        with stream:
            plaintext = DecryptedStream(stream, self.custody.decrypting_keyring(), bucket=self.bucket, key=key)
            if self.manifest.etag is not None and not key.startswith(RESERVED_PREFIX):
                check_current(self.manifest, key, plaintext.message_id, shown_name=name)
            result = upload_stream(
                self.s3, source=plaintext, size=total, bucket=self.bucket, key=key,
                key_provider=self.custody.encrypting_keyring(), context=plaintext.rotated_context(),
                settings=self.settings, on_bytes=self.on_bytes, what=f"rotation of {what}", if_match=etag,
                digest=False,  # the record keeps the file's digest (below); this plaintext is authenticated
            )  # fmt: skip
        if entry is not None:  # the same plaintext (padding included), a new message: the record follows it
            self.pending[key] = Entry(
                entry.sha256, entry.size, base64.b64encode(result.message_id).decode(), result.etag
            )
        return ObjectResult(key, name, ROTATED, reason, result.stored_bytes, result.version_id)

    def _open(self, key: str, version: str | None, etag: str) -> S3ObjectStream:
        try:
            stream = S3ObjectStream(self.s3, self.bucket, key, version if version and version != "null" else None)
        except Exception as error:
            raise _s3_error(error, f"read of s3://{self.bucket}/{key}") from None
        if etag and stream.etag and stream.etag != etag:
            stream.close()
            raise TierAError(f"s3://{self.bucket}/{key} changed while it was read; run rotate again")
        return stream

    def _repair(self, key: str, name: str, version: str | None, etag: str, entry: Entry) -> ObjectResult:
        """Already rotated, manifest not yet updated (a run that died): accepted only as the rotation of the record.

        The header is authenticated (the data key unwrapped with the new key); its context must
        name, as the message it replaced, exactly the message the manifest records.
        """
        if self.dryrun:
            return ObjectResult(key, name, WOULD, "already rotated; the manifest entry would be updated", 0, version)
        with self._open(key, version, etag) as stream:
            header = DecryptedStream(stream, self.custody.decrypting_keyring(), bucket=self.bucket, key=key)
        if header.encryption_context.get(names.CONTEXT_ROTATED_FROM) != entry.message_id:
            raise RollbackError(
                f"{name}: wrapped for the new key but not the rotation of the version the manifest records "
                "(written outside the client, or restored); refused"
            )
        self.pending[key] = Entry(entry.sha256, entry.size, header.message_id, etag)
        return ObjectResult(key, name, ALREADY, "already rotated; manifest entry updated (interrupted run)", 0, version)

    def flush(self, *, force: bool = False) -> None:
        """Write the manifest (under the encrypting key) with the pending entries."""
        if self.dryrun or self.manifest.etag is None or not (self.pending or force):
            return
        self.manifest = save_manifest(self.s3, self.custody, self.bucket, self.manifest, dict(self.pending))
        self.pending.clear()

    def manifest_needs_rotation(self) -> bool:
        if self.manifest.etag is None:
            return False
        try:
            head = self.s3.get_object(Bucket=self.bucket, Key=MANIFEST_KEY, Range=f"bytes=0-{HEADER_PEEK_BYTES - 1}")
        except Exception as error:
            raise _s3_error(error, f"read of s3://{self.bucket}/{MANIFEST_KEY}") from None
        return frozenset(summarize_header(head["Body"].read()).wrapping_keys) != self.plan.target


def ordered_keys(s3, bucket: str, stored_prefix: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(control objects, data objects) as (stored key, stored size): the bucket record first, no manifest."""
    control = [(o["Key"], o["Size"]) for o in list_objects(s3, bucket, RESERVED_PREFIX) if o["Key"] != MANIFEST_KEY]
    control.sort(key=lambda item: (item[0] != BUCKET_RECORD, item[0]))
    data = [
        (o["Key"], o["Size"])
        for o in list_objects(s3, bucket, stored_prefix)
        if not o["Key"].startswith(RESERVED_PREFIX) and not o["Key"].endswith("/")
    ]
    return control, data


# --- The command --------------------------------------------------------------------------
def register(command: Callable[[str, str], argparse.ArgumentParser], commands: dict[str, Callable]) -> None:
    """Add `rotate` to the CLI: `command(name, help)` makes a subparser with the common options."""
    parser = command("rotate", "re-encrypt objects under the first --key (resumable; older keys as further --key)")
    parser.add_argument("source", metavar="S3URL", help="s3://bucket/prefix (every current object under it)")
    parser.add_argument("--dryrun", action="store_true", help="show what would be rotated; change nothing")
    parser.add_argument("--drop-key", action="append", metavar="NS/NAME", default=[],
                        help="a wrapping key the rotated messages may lose although it is not given (e.g. an "
                             "old escrow key); repeatable")  # fmt: skip
    from kommunmoln.tier_a import cli  # loaded by now: cli.build_parser calls register

    cli._add_transfer(parser)
    parser.add_argument("--escrow-public-key", metavar="PEM", help="keep (or add) this RSA escrow key's wrapping")
    parser.add_argument("--escrow-key", metavar="KEYFILE", help="keep (or add) this AES escrow key file's wrapping")
    commands["rotate"] = cmd_rotate


def cmd_rotate(args: argparse.Namespace) -> int:
    from kommunmoln.tier_a import cli  # the CLI imports this module to register the command
    from kommunmoln.tier_a.custody import open_custody

    drop = [parse_key_name(text) for text in args.drop_key]
    settings = TransferSettings(part_size=args.part_size_mib * MIB, concurrency=args.concurrency)
    aws = cli._Aws(args, concurrency=settings.concurrency)
    location = aws.location(args.source)
    report = args.reporter
    with open_custody(cli.custody_options(args), need_primary=True) as custody:
        if not custody.decrypt_only and not drop:
            report.always(f"note: no older key given (add it as a further --key); {custody.description} only")
        named = NamedBucket.open(aws.s3, custody, location.bucket, plain_names=args.plain_names, create=False)
        stored_prefix = named.stored_prefix(location.key)
        run = Rotation(aws.s3, custody, location.bucket, key_plan(custody, drop), settings, named=named,
                       manifest=load_manifest(aws.s3, custody, location.bucket), dryrun=args.dryrun)  # fmt: skip
        control, data = ordered_keys(aws.s3, location.bucket, stored_prefix)
        if not data and location.key:
            raise UsageError(f"no objects under s3://{location.bucket}/{location.key}")
        counts = {ROTATED: 0, ALREADY: 0, WOULD: 0, FAILED: 0}
        todo = control + data
        with report.progress("rotate", sum(size for _, size in todo) or None, files=len(todo)) as bar:
            run.on_bytes = bar.update
            try:
                for index, (key, _) in enumerate(todo, 1):
                    result = run.rotate(key)
                    bar.file_done()
                    counts[result.status] += 1
                    _report(args, location.bucket, result)
                    if index % MANIFEST_FLUSH_EVERY == 0:
                        run.flush()
            finally:  # Ctrl-C too: what was rotated is recorded before the command ends
                run.flush(force=not args.dryrun and run.manifest_needs_rotation())
            bar.finish()
    text = (f"{'(dryrun) ' if args.dryrun else ''}rotated {counts[ROTATED]}, would rotate {counts[WOULD]}, "
            f"already rotated {counts[ALREADY]}, failed {counts[FAILED]} of {len(todo)} "
            f"(new key: {_names(run.plan.target)}; older versions keep their old key)")  # fmt: skip
    report.summary(text, rotated=counts[ROTATED], would_rotate=counts[WOULD], already_rotated=counts[ALREADY],
                   failed=counts[FAILED], total=len(todo), target_keys=sorted("/".join(k) for k in run.plan.target),
                   dryrun=args.dryrun)  # fmt: skip
    if counts[FAILED]:
        print(f"error: {counts[FAILED]} of {len(todo)} objects were not rotated; fix them and run rotate again",
              file=sys.stderr, flush=True)  # fmt: skip
        return EXIT_FAILED
    return 0


def _report(args: argparse.Namespace, bucket: str, result: ObjectResult) -> None:
    where = f"s3://{bucket}/{result.name}"
    fields = dict(bucket=bucket, key=result.key, name=result.name, status=result.status, reason=result.reason,
                  version_id=result.version_id, stored_bytes=result.stored_bytes)  # fmt: skip
    if result.status == FAILED:
        args.reporter.error(f"{where}: not rotated: {result.reason}", **fields)
    else:
        args.reporter.result(f"{result.status} {where}: {result.reason}", **fields)
