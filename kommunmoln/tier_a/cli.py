"""The tier A client: the `kommunmoln` command (client-side encryption with municipality-held keys).

    kommunmoln COMMAND ...                        (installed: pip install / pipx install)
    python -m usecases.client_side_encryption ... (from a clone; adds the `demo` command)

Commands (a stable interface, documented in docs/use-case-1.md):
  keygen   --out KEYFILE [--namespace NS] [--name NAME] [--escrow-out PREFIX]
  encrypt  IN OUT --key KEYFILE [--escrow-public-key PEM] [--context k=v ...]
  decrypt  IN OUT --key KEYFILE [--expect-context k=v ...] [--escrow-private-key PEM]
  upload   PATH... s3://bucket/prefix [--context k=v ...] [--pad]
  download s3://bucket/key-or-prefix DEST [--expect-context k=v ...] [--allow-unrecorded]
  verify   s3://bucket/key-or-prefix
  ls       s3://bucket/prefix
  sync     DIR s3://bucket/prefix [--dryrun] [--exclude P] [--include P] [--delete] [--pad]
  rm       s3://bucket/key... [--recursive]

Names are plaintext on the command line and in every message; in S3 they are encrypted
(AES-SIV per path segment) unless the bucket was written with --plain-names
(named_bucket.py, docs/use-case-1.md section 10).

Exit codes: 0 success, 1 a check or an operation failed (wrong key, tampered data,
quarantined object, S3 error), 2 bad input (usage, missing file, bad key file, bad URL,
unknown bucket), 130 interrupted. Errors are one line on stderr, never a traceback,
never key material. The library under kommunmoln/ never imports lambdas/ or stacks/.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import kommunmoln
from kommunmoln import names, object_check
from kommunmoln.config import DEFAULTS
from kommunmoln.tier_a import batch_verify, rotate
from kommunmoln.tier_a.bulk import DEFAULT_FILES_IN_FLIGHT
from kommunmoln.tier_a.codec import (
    HEADER_PEEK_BYTES,
    decrypt_file,
    encrypt_file,
    format_context,
    parse_context_items,
    read_file_head,
    summarize_header,
)
from kommunmoln.tier_a.custody import Custody, CustodyOptions, open_custody
from kommunmoln.tier_a.errors import EXIT_FAILED, EXIT_USAGE, Interrupted, TierAError, UsageError
from kommunmoln.tier_a.keys import DEFAULT_NAMESPACE, RawAesKey, check_key_name, write_escrow_pair, write_key_file
from kommunmoln.tier_a.named_bucket import NamedBucket, unpadding, upload_context
from kommunmoln.tier_a.named_upload import pad_source, report_upload, upload_files
from kommunmoln.tier_a.outputs import is_stdio, stdout_spool
from kommunmoln.tier_a.report import Reporter
from kommunmoln.tier_a.sync import Filters, SizeModel, delete_current, plan_sync, require_versioning
from kommunmoln.tier_a.transfer import (
    DEFAULT_CONCURRENCY,
    DEFAULT_PART_SIZE,
    DEFAULT_REGION,
    MIB,
    STACK_BUCKET,
    AwsSettings,
    S3Location,
    TransferSettings,
    download_decrypted,
    list_keys,
    list_objects,
    make_session,
    object_exists,
    parse_s3_url,
    read_object_head,
    resolve_location,
    s3_client,
    scan_uploads,
    stack_outputs,
    stored_size_estimate,
    upload_encrypted,
)
from kommunmoln.tier_c import cli as xks_cli

PROG = "kommunmoln"
EXIT_INTERRUPTED = 130

EPILOG = """\
examples:
  kommunmoln keygen --out ~/.kommunmoln/key.json
  kommunmoln upload --key key.json /srv/arende s3://my-bucket/arende/
  kommunmoln download --key key.json s3://my-bucket/arende/ ./restore/
  kommunmoln verify --key key.json s3://my-bucket/arende/
  kommunmoln sync --key key.json --dryrun /srv/arende s3://my-bucket/arende/
  kommunmoln ls --key key.json s3://my-bucket/arende/
  kommunmoln encrypt --key key.json protokoll.pdf protokoll.pdf.esdk
  kommunmoln COMMAND --help

exit codes:
  0    success
  1    a check or an operation failed (wrong key, tampered data, quarantined object, S3 error)
  2    bad input (usage, missing file, bad key file, bad URL, unknown bucket)
  130  interrupted (Ctrl-C or SIGTERM)

Errors are one line on stderr, never a traceback and never key material.
"""


@dataclass(frozen=True)
class ExtraCommand:
    """A command added by an embedding script (the repository's `demo`), not by the package."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def version_string() -> str:
    """The installed distribution's version (the source tree's when run from a clone)."""
    try:
        return importlib.metadata.version("kommunmoln")
    except importlib.metadata.PackageNotFoundError:
        return kommunmoln.__version__


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


class _Repeated(argparse.Action):
    """A repeatable option whose default (from the environment) is replaced, not extended, when given."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        current = getattr(namespace, self.dest, None)
        given = current if isinstance(current, _Given) else _Given()
        given.append(values)
        setattr(namespace, self.dest, given)


class _Given(list):
    """Values given on the command line (as opposed to the environment default)."""


def _env_list(variable: str) -> list[str] | None:
    value = os.environ.get(variable)
    return [value] if value else None


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options accepted before or after the command (defaults live on the top-level parser)."""

    def default(value):
        return argparse.SUPPRESS if suppress else value

    keys = parser.add_argument_group("key custody")
    keys.add_argument("--key", metavar="KEYFILE", action=_Repeated, default=default(_env_list(names.ENV_KEY_FILE)),
                      help=f"workshop key file (JSON, mode 0600); default ${names.ENV_KEY_FILE}. Repeatable: the "
                           "first encrypts, every further one is accepted for decryption only (key rotation)")  # fmt: skip
    keys.add_argument("--pkcs11-lib", metavar="SO", default=default(os.environ.get(names.ENV_PKCS11_LIB)),
                      help="PKCS#11 library of the HSM (e.g. /usr/lib/softhsm/libsofthsm2.so)")  # fmt: skip
    keys.add_argument("--pkcs11-token", metavar="LABEL", default=default(os.environ.get(names.ENV_PKCS11_TOKEN)),
                      help="token label")  # fmt: skip
    keys.add_argument("--pkcs11-key-label", metavar="LABEL", action=_Repeated,
                      default=default(_env_list(names.ENV_PKCS11_KEY_LABEL)),
                      help="label of the AES key in the token (also the ESDK key name); repeatable like --key: "
                           "the first encrypts, further labels decrypt only (with the HSM key, --key files decrypt only)")  # fmt: skip
    keys.add_argument("--pkcs11-pin-env", metavar="VAR", default=default(names.ENV_PKCS11_PIN),
                      help=f"environment variable holding the user PIN (default {names.ENV_PKCS11_PIN})")  # fmt: skip
    keys.add_argument("--namespace", metavar="NS", default=default(DEFAULT_NAMESPACE),
                      help=f"key namespace (ESDK provider id) for keygen and HSM keys (default {DEFAULT_NAMESPACE})")  # fmt: skip
    aws = parser.add_argument_group("AWS")
    aws.add_argument("--profile", default=default(None), help="AWS profile")
    aws.add_argument("--region", default=default(DEFAULT_REGION), help=f"AWS region (default {DEFAULT_REGION})")
    aws.add_argument("--endpoint-url", default=default(None), help="S3 endpoint (e.g. a local moto server)")
    aws.add_argument("--stack-name", default=default(None),
                     help=f"tier A stack: s3://{STACK_BUCKET}/... means its data bucket (output {names.OUTPUT_DATA_BUCKET})")  # fmt: skip
    aws.add_argument("--plain-names", action="store_true", default=default(False),
                     help="object keys are the plaintext names (a bucket written that way; default: names encrypted, "
                          "AWS sees opaque keys). A bucket is one or the other; mixing is refused")  # fmt: skip
    out = parser.add_argument_group("output")
    out.add_argument("--quiet", "-q", action="store_true", default=default(False),
                     help="no progress, no result lines (errors still on stderr; the exit code tells)")  # fmt: skip
    out.add_argument("--json", action="store_true", default=default(False),
                     help="JSON Lines on stdout for scripts: one object per result, skipped input, error and summary")  # fmt: skip


class _Filter(argparse.Action):
    """--exclude/--include into one ordered list of (kind, pattern)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        rules = list(getattr(namespace, self.dest, None) or [])
        rules.append((option_string.lstrip("-"), values))
        setattr(namespace, self.dest, rules)


def _add_pad(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pad", action="store_true",
                        help="pad each file to a Padmé length before encryption so AWS learns less from sizes: "
                             "+1 byte and at most 12.5%% (under 256 B), 6.25%% (to 64 KiB), 3.13%% (to 4 GiB)")  # fmt: skip


def _add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="replace existing regular files (never symlinks, devices or FIFOs; default: refuse)")  # fmt: skip


def _add_files_in_flight(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--files-in-flight", type=int, default=DEFAULT_FILES_IN_FLIGHT,
                        help=f"small files (under one part) uploaded at once (1-256, default {DEFAULT_FILES_IN_FLIGHT}); "
                             "larger files go one at a time with --concurrency parts")  # fmt: skip


def _add_transfer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--part-size-mib", type=int, default=DEFAULT_PART_SIZE // MIB,
                        help=f"multipart part size in MiB (5-5120, default {DEFAULT_PART_SIZE // MIB})")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help=f"parts in flight at once (default {DEFAULT_CONCURRENCY}); memory ~ (concurrency+1) x part size")  # fmt: skip


def _download_streams(text: str) -> int:
    """`--download-streams N`: 1-64 GETs in flight (TransferSettings validates the same range)."""
    try:
        return TransferSettings(download_streams=int(text)).streams
    except (ValueError, UsageError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of streams between 1 and 64") from None


def build_parser(*, prog: str = PROG, extra: Sequence[ExtraCommand] = ()) -> argparse.ArgumentParser:
    """The whole command line: the package's commands plus any `extra` ones of an embedding script."""
    parser = _Parser(
        prog=prog,
        description="Tier A: client-side encryption of S3 objects with keys only the municipality holds.",
        epilog=EPILOG.replace("kommunmoln ", f"{prog} "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version_string()}")
    _add_common(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        _add_common(sub, suppress=True)
        return sub

    keygen = command("keygen", "create a workshop key file (and optionally an escrow RSA key pair, or an HSM key)")
    keygen.add_argument("--out", metavar="KEYFILE", help="key file to create (mode 0600; never overwritten)")
    keygen.add_argument("--name", help="key name (default: tier-a-YYYYMMDD-xxxx; HSM: the key label)")
    keygen.add_argument("--escrow-out", metavar="PREFIX", help="also create PREFIX.pub.pem and PREFIX.key.pem (0600)")

    encrypt = command("encrypt", "encrypt a local file (no AWS involved)")
    encrypt.add_argument("input", metavar="IN", help="file to encrypt ('-' = standard input)")
    encrypt.add_argument("output", metavar="OUT", help="message to write ('-' = standard output)")
    _add_force(encrypt)
    encrypt.add_argument("--escrow-public-key", metavar="PEM", help="also wrap the data key for this RSA escrow key")
    encrypt.add_argument("--context", action="append", metavar="k=v", help="encryption context entry (plaintext!)")
    encrypt.add_argument(
        "--escrow-key", metavar="KEYFILE", help="also wrap the data key for this offline AES escrow key file"
    )

    decrypt = command("decrypt", "decrypt a local ESDK message; OUT appears only if all of it authenticated")
    decrypt.add_argument("input", metavar="IN", help="ESDK message ('-' = standard input)")
    decrypt.add_argument("output", metavar="OUT", help="plaintext file ('-' = standard output, after authentication)")
    _add_force(decrypt)
    decrypt.add_argument("--expect-context", action="append", metavar="k=v", help="required encryption context entry")
    decrypt.add_argument("--escrow-private-key", metavar="PEM", help="recover with the offline escrow private key")
    decrypt.add_argument("--escrow-key", metavar="KEYFILE", help="recover with the offline AES escrow key file")

    upload = command("upload", "encrypt and upload files or directories (recursively) to s3://bucket/prefix")
    upload.add_argument("paths", nargs="+", metavar="PATH... S3URL")
    upload.add_argument("--escrow-public-key", metavar="PEM", help="also wrap every data key for this RSA escrow key")
    upload.add_argument(
        "--escrow-key", metavar="KEYFILE", help="also wrap every data key for this offline AES escrow key file"
    )
    upload.add_argument("--context", action="append", metavar="k=v", help="extra encryption context entry (plaintext!)")
    _add_pad(upload)
    _add_transfer(upload)
    _add_files_in_flight(upload)

    download = command("download", "download and decrypt one object or every object under a prefix")
    download.add_argument("source", metavar="S3URL", help="s3://bucket/key (one object) or s3://bucket/prefix/")
    download.add_argument("dest", metavar="DEST", help="file or directory ('-' = standard output, one object)")
    _add_force(download)
    download.add_argument("--expect-context", action="append", metavar="k=v", help="extra required context entry")
    download.add_argument("--download-streams", type=_download_streams, default=None, metavar="N",
                          help="GETs in flight per object, the first included (1-64; default: "
                               f"{DEFAULT_CONCURRENCY}, at most two per usable core plus one)")  # fmt: skip
    download.add_argument("--escrow-private-key", metavar="PEM", help="recover with the offline escrow private key")
    download.add_argument("--escrow-key", metavar="KEYFILE", help="recover with the offline AES escrow key file")
    download.add_argument("--allow-unrecorded", action="store_true",
                          help="accept objects the bucket's manifest does not record (written outside this client); "
                               "a recorded object whose version differs (rollback) is still refused")  # fmt: skip

    verify = command("verify", "run the validator's header check from the client (read-only)")
    verify.add_argument("source", metavar="S3URL")
    verify.add_argument("--allowed-namespace", action="append", metavar="NS",
                        help=f"allowed key namespace (repeatable; default {', '.join(DEFAULTS['tier_a_key_namespaces'])})")  # fmt: skip

    ls = command("ls", "list objects under s3://bucket/prefix: key, size (plaintext size with a key), time")
    ls.add_argument("source", metavar="S3URL", help="s3://bucket/prefix")

    sync = command("sync", "upload new and changed files of a directory (like `aws s3 sync`; see docs)")
    sync.add_argument("source", metavar="DIR", help="local directory")
    sync.add_argument("dest", metavar="S3URL", help="s3://bucket/prefix")
    sync.add_argument("--dryrun", action="store_true", help="show what would be uploaded and deleted; change nothing")
    sync.add_argument("--exclude", action=_Filter, dest="filters", metavar="PATTERN",
                      help="leave out paths matching PATTERN (relative to DIR; repeatable, last match wins)")  # fmt: skip
    sync.add_argument("--include", action=_Filter, dest="filters", metavar="PATTERN",
                      help="take paths matching PATTERN back in (repeatable, last match wins)")  # fmt: skip
    sync.add_argument("--delete", action="store_true",
                      help="add delete markers for objects without a local file (versioned buckets only)")  # fmt: skip
    sync.add_argument("--context", action="append", metavar="k=v", help="extra encryption context entry (plaintext!)")
    sync.add_argument("--escrow-public-key", metavar="PEM", help="also wrap every data key for this RSA escrow key")
    sync.add_argument(
        "--escrow-key", metavar="KEYFILE", help="also wrap every data key for this offline AES escrow key file"
    )
    _add_pad(sync)
    _add_transfer(sync)
    _add_files_in_flight(sync)

    rm = command("rm", "delete objects: a delete marker only (versioned buckets; every version stays)")
    rm.add_argument(
        "targets", nargs="+", metavar="S3URL", help="s3://bucket/key (s3://bucket/prefix/ with --recursive)"
    )
    rm.add_argument("--recursive", action="store_true", help="every object under a prefix")

    rotate.register(command, COMMANDS)
    batch_verify.register(command, COMMANDS)
    xks_cli.register(commands, COMMANDS)  # tier C: `kommunmoln xks ...` (its own options, not tier A's)
    for command_spec in extra:
        command_spec.add_arguments(command(command_spec.name, command_spec.help))
    return parser


# --- Commands -------------------------------------------------------------------------------
def custody_options(args: argparse.Namespace) -> CustodyOptions:
    key_files, labels = list(args.key or []), list(args.pkcs11_key_label or [])
    hsm = bool(args.pkcs11_lib or args.pkcs11_token or labels)
    return CustodyOptions(
        key_file=None if hsm else (key_files[0] if key_files else None),
        decrypt_key_files=tuple(key_files if hsm else key_files[1:]),
        decrypt_pkcs11_labels=tuple(labels[1:]),
        pkcs11_lib=args.pkcs11_lib,
        pkcs11_token=args.pkcs11_token,
        pkcs11_key_label=labels[0] if labels else None,
        pkcs11_pin_env=args.pkcs11_pin_env,
        namespace=args.namespace,
        escrow_public_key=getattr(args, "escrow_public_key", None),
        escrow_private_key=getattr(args, "escrow_private_key", None),
        escrow_key_file=getattr(args, "escrow_key", None),
    )


def _say(args: argparse.Namespace, text: str, **fields: object) -> None:
    args.reporter.result(text, **fields)


def cmd_keygen(args: argparse.Namespace) -> int:
    options = custody_options(args)
    if options.uses_hsm:
        if args.out:
            raise UsageError(
                "--out writes a key file; an HSM key stays in the token (drop --out or the --pkcs11-* options)"
            )
        if options.decrypt_pkcs11_labels:
            raise UsageError("keygen creates one HSM key: give one --pkcs11-key-label")
        if args.name and args.name != options.pkcs11_key_label:
            raise UsageError("an HSM key's name is its label: use --pkcs11-key-label, not --name")
        pin = os.environ.get(options.pkcs11_pin_env)
        missing = [f for f, v in (("--pkcs11-lib", options.pkcs11_lib), ("--pkcs11-token", options.pkcs11_token),
                                  ("--pkcs11-key-label", options.pkcs11_key_label)) if not v]  # fmt: skip
        if missing:
            raise UsageError(f"HSM key generation needs {', '.join(missing)}")
        if not pin:
            raise UsageError(f"set the token's user PIN in the environment variable {options.pkcs11_pin_env}")
        from kommunmoln.tier_a.pkcs11_key import open_hsm_key

        hsm, _ = open_hsm_key(
            lib_path=options.pkcs11_lib, token_label=options.pkcs11_token, pin=pin,
            key_label=options.pkcs11_key_label, namespace=options.namespace, generate=True,
        )  # fmt: skip
        try:
            attributes = hsm.attributes()
        finally:
            hsm.close()
        _say(args, f"generated AES-256 key {options.namespace}/{options.pkcs11_key_label} in token "
                   f"{options.pkcs11_token!r} (sensitive={attributes['sensitive']}, extractable={attributes['extractable']})",
             key=f"{options.namespace}/{options.pkcs11_key_label}", token=options.pkcs11_token,
             sensitive=attributes["sensitive"], extractable=attributes["extractable"])  # fmt: skip
    else:
        if not args.out:
            raise UsageError("keygen needs --out KEYFILE (or the --pkcs11-* options to generate the key in an HSM)")
        key = RawAesKey.generate(args.namespace, check_key_name(args.name) if args.name else None)
        write_key_file(args.out, key)
        _say(args, f"wrote key {key.namespace}/{key.name} to {args.out} (mode 0600); keep it secret and backed up",
             key=f"{key.namespace}/{key.name}", path=str(args.out))  # fmt: skip
    if args.escrow_out:
        public_path, private_path = write_escrow_pair(args.escrow_out)
        _say(args, f"wrote escrow public key {public_path} and private key {private_path} (0600): "
                   "move the private key offline", escrow_public_key=str(public_path),
             escrow_private_key=str(private_path))  # fmt: skip
    return 0


def _data_on_stdout(args: argparse.Namespace, output: str) -> None:
    """Reports move to stderr when stdout carries the data."""
    if is_stdio(output):
        args.reporter.stream = sys.stderr


def cmd_encrypt(args: argparse.Namespace) -> int:
    context = parse_context_items(args.context)
    _data_on_stdout(args, args.output)
    total = None if is_stdio(args.input) else _file_size(args.input)
    with (
        open_custody(custody_options(args), need_primary=True) as custody,
        args.reporter.progress(
            f"encrypt {Path(args.input).name}", stored_size_estimate(total) if total else None
        ) as bar,
    ):
        size = encrypt_file(args.input, args.output, custody.encrypting_keyring(), context,
                            overwrite=args.force, on_bytes=bar.update)  # fmt: skip
        bar.finish()
    _say(args, f"encrypted {args.input} -> {args.output} ({size} bytes); encryption context: {format_context(context)}",
         input=args.input, output=args.output, stored_bytes=size, encryption_context=context)  # fmt: skip
    return 0


def _file_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None  # encrypt_file reports the problem


def _decrypting_keyring(custody: Custody, head: Callable[[], bytes]):
    header = summarize_header(head()) if custody.needs_header else None
    return custody.decrypting_keyring(header)


def cmd_decrypt(args: argparse.Namespace) -> int:
    expected = parse_context_items(args.expect_context, option="--expect-context")
    _data_on_stdout(args, args.output)
    total = None if is_stdio(args.input) else _file_size(args.input)
    with open_custody(custody_options(args), need_primary=False) as custody:
        keyring = _decrypting_keyring(custody, lambda: read_file_head(args.input, HEADER_PEEK_BYTES))
        with args.reporter.progress(f"decrypt {Path(args.input).name}", total) as bar:
            result = decrypt_file(args.input, args.output, keyring, expected_context=expected,
                                  overwrite=args.force, on_bytes=bar.update, output_filter=unpadding)  # fmt: skip
    # The context is reported even with --quiet: it is what the message claims to be.
    args.reporter.always(
        f"decrypted {args.input} -> {args.output} ({result.plaintext_bytes} bytes); "
        f"encryption context: {format_context(result.encryption_context)}",
        input=args.input, output=args.output, plaintext_bytes=result.plaintext_bytes,
        encryption_context=result.encryption_context,
    )  # fmt: skip
    return 0


class _Aws:
    """boto3 session/clients and the stack's bucket, created on first use."""

    def __init__(self, args: argparse.Namespace, *, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.settings = AwsSettings(args.profile, args.region, args.endpoint_url, args.stack_name)
        self.concurrency = concurrency
        self._session = None
        self._s3 = None

    @property
    def session(self):
        if self._session is None:
            self._session = make_session(self.settings)
        return self._session

    @property
    def s3(self):
        if self._s3 is None:
            self._s3 = s3_client(self.session, self.settings, concurrency=self.concurrency)
        return self._s3

    def stack_bucket(self) -> str:
        if not self.settings.stack_name:
            raise UsageError(f"s3://{STACK_BUCKET}/... needs --stack-name")
        outputs = stack_outputs(self.session, self.settings, self.settings.stack_name)
        if names.OUTPUT_DATA_BUCKET not in outputs:
            raise UsageError(f"stack {self.settings.stack_name!r} has no output {names.OUTPUT_DATA_BUCKET}")
        return outputs[names.OUTPUT_DATA_BUCKET]

    def location(self, url: str) -> S3Location:
        return resolve_location(parse_s3_url(url), stack_bucket=self.stack_bucket)


def _has_keys(args: argparse.Namespace) -> bool:
    """Whether any key custody was given (a key file, an HSM or an escrow key)."""
    options = custody_options(args)
    return bool(options.key_file or options.uses_hsm or options.escrow_private_key or options.escrow_key_file)


def _named(args: argparse.Namespace, aws: _Aws, custody: Custody, bucket: str, *, create: bool = False) -> NamedBucket:
    return NamedBucket.open(aws.s3, custody, bucket, plain_names=args.plain_names, create=create,
                            dry_run=getattr(args, "dryrun", False))  # fmt: skip


def cmd_upload(args: argparse.Namespace) -> int:
    if len(args.paths) < 2:
        raise UsageError("upload needs at least one PATH and the destination s3://bucket/prefix")
    *sources, url = args.paths
    extra = upload_context(parse_context_items(args.context), pad=args.pad)
    transfer = TransferSettings(part_size=args.part_size_mib * MIB, concurrency=args.concurrency)
    aws = _Aws(args, concurrency=max(transfer.concurrency, args.files_in_flight))
    location = aws.location(url)
    plan = scan_uploads(sources, location)
    for skipped in plan.skipped:
        args.reporter.skipped(skipped.name, skipped.reason)
    with open_custody(custody_options(args), need_primary=True) as custody:
        nb = _named(args, aws, custody, location.bucket, create=True)
        if len(plan.items) == 1 and not plan.skipped:  # one file: its error is the command's error
            path, name = plan.items[0]
            stored = nb.stored(name, for_upload=True)
            try:
                with args.reporter.progress("upload", stored_size_estimate(path.stat().st_size)) as bar:
                    result = upload_encrypted(aws.s3, source_path=path, bucket=location.bucket, key=stored,
                                              key_provider=custody.encrypting_keyring(), extra_context=extra,
                                              settings=transfer, on_bytes=bar.update, pad_source=pad_source(args.pad))  # fmt: skip
                    bar.finish()
                nb.record_upload(result)
            except TierAError as error:
                raise type(error)(nb.localize(str(error), stored, name)) from None
            except Interrupted as interrupted:
                raise Interrupted(nb.localize(interrupted.reason, stored, name), stored=interrupted.stored) from None
            finally:
                nb.save()
            report_upload(args.reporter, "uploaded", result, name)
            return _finish(args, "uploaded", 1, 0, 0, skips_fail=False, plaintext_bytes=result.plaintext_bytes,
                           stored_bytes=result.stored_bytes)  # fmt: skip
        totals = upload_files(aws.s3, args.reporter, nb, custody.encrypting_keyring(), plan.items, extra=extra,
                              transfer=transfer, files_in_flight=args.files_in_flight, pad=args.pad, label="uploaded")  # fmt: skip
    return _finish(args, "uploaded", totals.uploaded, totals.failed, len(plan.skipped), skips_fail=False,
                   plaintext_bytes=totals.plaintext_bytes, stored_bytes=totals.stored_bytes)  # fmt: skip


def _finish(
    args: argparse.Namespace, verb: str, done: int, failed: int, skipped: int, *, skips_fail: bool, **fields: object
) -> int:
    """The summary of a many-file command; exit 1 when anything failed (or was skipped, if `skips_fail`).

    A failed run ends with the summary as one `error:` line on stderr (even with --quiet);
    otherwise it is printed on stdout when the run covered more than one file. Symlinks a
    directory upload does not follow are reported but do not fail it; an object a download
    cannot write safely does.
    """
    total = done + failed + skipped
    text = f"{verb} {done} of {total}" + (f", {failed} failed" if failed else "") + (
        f", {skipped} skipped" if skipped else "")  # fmt: skip
    if args.json:
        args.reporter.summary(text, done=done, failed=failed, skipped=skipped, **fields)
    if failed or (skipped and skips_fail):
        print(f"error: {text}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    if total > 1 and not args.json:
        args.reporter.summary(text)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    extra = parse_context_items(args.expect_context, option="--expect-context")
    transfer = TransferSettings(download_streams=args.download_streams)
    aws = _Aws(args, concurrency=max(DEFAULT_CONCURRENCY, transfer.streams))
    location = aws.location(args.source)
    report = args.reporter
    _data_on_stdout(args, args.dest)
    failures = done = 0
    with open_custody(custody_options(args), need_primary=False) as custody:
        nb = _named(args, aws, custody, location.bucket)
        plan, shown = nb.plan_downloads(location, "." if is_stdio(args.dest) else args.dest)
        if is_stdio(args.dest) and (len(plan.items) != 1 or plan.skipped):
            raise UsageError("'-' (standard output) takes exactly one object, not a prefix")
        for skipped in plan.skipped:
            report.skipped(skipped.name, skipped.reason)
        with report.progress("download", sum(plan.sizes.get(k, 0) for k, _ in plan.items) or None,
                             files=len(plan.items)) as bar:  # fmt: skip
            for key, target in plan.items:
                name = shown[key]
                try:
                    keyring = _decrypting_keyring(
                        custody, lambda k=key: read_object_head(aws.s3, location.bucket, k, HEADER_PEEK_BYTES)
                    )
                    with contextlib.ExitStack() as stack:
                        if is_stdio(args.dest):
                            target = stack.enter_context(stdout_spool())
                        else:
                            target.parent.mkdir(parents=True, exist_ok=True)
                        result = download_decrypted(
                            aws.s3, bucket=location.bucket, key=key, dest=target, key_provider=keyring,
                            expected_context=extra, on_bytes=bar.update, overwrite=args.force,
                            output_filter=nb.output_filter(key, name, allow_unrecorded=args.allow_unrecorded),
                            settings=transfer,
                        )  # fmt: skip
                except TierAError as error:
                    error = type(error)(nb.localize(str(error), key, name))
                    if len(plan.items) == 1 and not plan.skipped:
                        raise error from None
                    failures += 1
                    report.error(str(error), key=name)
                    continue
                finally:
                    bar.file_done()
                done += 1
                shown_dest = "-" if is_stdio(args.dest) else target
                _say(args, f"downloaded s3://{location.bucket}/{name} -> {shown_dest} ({result.plaintext_bytes} bytes)",
                     bucket=location.bucket, key=name, stored_key=key, path=str(shown_dest),
                     plaintext_bytes=result.plaintext_bytes)  # fmt: skip
    status = _finish(args, "downloaded", done, failures, len(plan.skipped), skips_fail=True)
    if failures:
        print("error: no plaintext was written for the failed objects", file=sys.stderr, flush=True)
    return status


def _verify_targets(args: argparse.Namespace, aws: _Aws, location: S3Location) -> list[tuple[str, str]]:
    """(stored key, shown name) pairs: plaintext names with a key, stored keys as given without one."""
    if _has_keys(args):
        with open_custody(custody_options(args), need_primary=False) as custody:
            _, found = _named(args, aws, custody, location.bucket).objects(location.key)
        targets = [(item.stored, item.name or item.stored) for item in found]
    elif object_exists(aws.s3, location.bucket, location.key):
        targets = [(location.key, location.key)]
    else:
        prefix = location.key if not location.key or location.key.endswith("/") else location.key + "/"
        targets = [(k, k) for k in list_keys(aws.s3, location.bucket, prefix) if not k.endswith("/")]
    if not targets:
        hint = "" if _has_keys(args) else " (without --key, names are the stored keys)"
        raise UsageError(f"no object or prefix s3://{location.bucket}/{location.key}{hint}")
    return targets


def cmd_verify(args: argparse.Namespace) -> int:
    rules = object_check.Rules(
        allowed_namespaces=tuple(args.allowed_namespace or DEFAULTS["tier_a_key_namespaces"]),
        required_context_keys=names.REQUIRED_CONTEXT_KEYS,
        header_read_bytes=int(DEFAULTS["tier_a_header_read_bytes"]),
    )
    aws = _Aws(args)
    location = aws.location(args.source)
    targets = _verify_targets(args, aws, location)
    failed = 0
    report = args.reporter
    for key, name in targets:
        where = f"s3://{location.bucket}/{name}"
        fields = {"bucket": location.bucket, "key": name, "stored_key": key}
        try:
            outcome = object_check.check_object(
                aws.s3, bucket=location.bucket, key=key, version_id=None, settings=rules
            )
        except Exception as error:  # AccessDenied etc.: no decision is a failure too
            failed += 1
            reason = f"not checked: {' '.join(str(error).split())}".replace(key, name)
            report.error(f"FAIL {where}: {reason}", status="unchecked", **fields)
            continue
        if outcome.status == object_check.STATUS_VALIDATED:
            report.result(f"pass {where}", status=outcome.status, **fields)
        else:
            failed += 1
            text = f"FAIL {where}: {'; '.join(outcome.reasons)}".replace(key, name)
            if args.json:
                report.result(text, status=outcome.status, reasons=list(outcome.reasons),
                              reason_codes=list(outcome.reason_codes), **fields)  # fmt: skip
            else:  # shown even with --quiet: a failed check is what the caller must see
                print(text, file=sys.stderr if args.quiet else sys.stdout, flush=True)
    passed = len(targets) - failed
    report.summary(f"{passed} passed, {failed} failed", passed=passed, failed=failed)
    return EXIT_FAILED if failed else 0


def cmd_ls(args: argparse.Namespace) -> int:
    aws = _Aws(args)
    location = aws.location(args.source)
    if not _has_keys(args):  # the auditor's view: stored keys and stored sizes
        count = 0
        for item in list_objects(aws.s3, location.bucket, location.key):
            count += 1
            _say(args, f"{item['LastModified']:%Y-%m-%d %H:%M:%S} {int(item.get('Size', 0)):>12} "
                       f"s3://{location.bucket}/{item['Key']}", bucket=location.bucket, stored_key=item["Key"],
                 stored_bytes=int(item.get("Size", 0)), last_modified=item["LastModified"].isoformat())  # fmt: skip
        args.reporter.summary(f"{count} objects (stored keys and sizes; give --key for names and plaintext sizes)",
                              objects=count)  # fmt: skip
        return 0
    count = 0
    with open_custody(custody_options(args), need_primary=False) as custody:
        nb = _named(args, aws, custody, location.bucket)
        model = SizeModel(custody.encrypting_keyring(), location.bucket) if custody.primary is not None else None
        for item in nb.listing(location.key):
            plaintext = nb.plaintext_size(item, model)  # model: unrecorded objects, if unpadded
            shown = f"{plaintext:>12}" if plaintext is not None else f"{item.size:>12}?"
            name = item.name if item.name is not None else f"{item.stored} (name does not decrypt)"
            count += 1
            _say(args, f"{item.last_modified:%Y-%m-%d %H:%M:%S} {shown} s3://{location.bucket}/{name}",
                 bucket=location.bucket, key=item.name, stored_key=item.stored, stored_bytes=item.size,
                 plaintext_bytes=plaintext, last_modified=item.last_modified.isoformat())  # fmt: skip
    args.reporter.summary(f"{count} objects (plaintext names and sizes; '?' = stored size of an object "
                          "the manifest does not record)", objects=count)  # fmt: skip
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    extra = upload_context(parse_context_items(args.context), pad=args.pad)
    transfer = TransferSettings(part_size=args.part_size_mib * MIB, concurrency=args.concurrency)
    aws = _Aws(args, concurrency=max(transfer.concurrency, args.files_in_flight))
    location = aws.location(args.dest)
    report = args.reporter
    dry = "(dryrun) " if args.dryrun else ""
    uploaded = failures = deleted = 0
    with open_custody(custody_options(args), need_primary=True) as custody:
        nb = _named(args, aws, custody, location.bucket, create=True)
        plan = plan_sync(nb, args.source, location, filters=Filters(args.filters or []), delete=args.delete)
        if plan.deletes and not args.dryrun:
            require_versioning(aws.s3, location.bucket, "sync --delete")
        for skipped in plan.skipped:
            report.skipped(skipped.name, skipped.reason)
        if args.dryrun:
            for local in plan.uploads:
                _say(args, f"{dry}upload: {local.path} -> s3://{location.bucket}/{local.key}", action="upload",
                     path=str(local.path), key=local.key, dryrun=True)  # fmt: skip
        elif plan.uploads:
            totals = upload_files(aws.s3, report, nb, custody.encrypting_keyring(), [(f.path, f.key) for f in plan.uploads],
                                  extra=extra, transfer=transfer, files_in_flight=args.files_in_flight, pad=args.pad,
                                  label="upload:")  # fmt: skip
            uploaded, failures = totals.uploaded, totals.failed
        try:
            for obj in plan.deletes:
                where = f"s3://{location.bucket}/{obj.name}"
                if args.dryrun:
                    _say(args, f"{dry}delete: {where}", action="delete", key=obj.name, dryrun=True)
                    continue
                try:
                    marker = delete_current(aws.s3, location.bucket, obj.stored)
                except TierAError as error:
                    failures += 1
                    report.error(nb.localize(str(error), obj.stored, str(obj.name)), key=obj.name)
                    continue
                nb.record_delete(obj.stored)
                deleted += 1
                _say(args, f"delete: {where} (delete marker {marker}; earlier versions kept)", action="delete",
                     key=obj.name, stored_key=obj.stored, delete_marker_version_id=marker)  # fmt: skip
        finally:
            nb.save()
    text = (f"{dry}{len(plan.uploads)} to upload, {len(plan.unchanged)} unchanged, {len(plan.deletes)} to delete"
            if args.dryrun else
            f"uploaded {uploaded}, unchanged {len(plan.unchanged)}, deleted {deleted}, failed {failures}, "
            f"skipped {len(plan.skipped)}")  # fmt: skip
    report.summary(text, uploaded=uploaded, unchanged=len(plan.unchanged), deleted=deleted, failed=failures,
                   skipped=len(plan.skipped), dryrun=args.dryrun, to_upload=len(plan.uploads),
                   to_delete=len(plan.deletes))  # fmt: skip
    if failures:
        print(f"error: {failures} of {len(plan.uploads) + len(plan.deletes)} changes failed", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    aws = _Aws(args)
    failures = count = 0
    with open_custody(custody_options(args), need_primary=True) as custody:
        targets: list[tuple[NamedBucket, str, str]] = []  # (bucket, stored key, name)
        opened: dict[str, NamedBucket] = {}
        for url in args.targets:
            location = aws.location(url)
            if location.bucket not in opened:
                opened[location.bucket] = _named(args, aws, custody, location.bucket)
            nb = opened[location.bucket]
            targets += [(nb, i.stored, i.name or i.stored) for i in nb.targets(location.key, recursive=args.recursive)]
        for bucket in sorted(opened):
            require_versioning(aws.s3, bucket, "rm")
        try:
            for nb, key, name in targets:
                try:
                    marker = delete_current(aws.s3, nb.bucket, key)
                except TierAError as error:
                    failures += 1
                    args.reporter.error(nb.localize(str(error), key, name), bucket=nb.bucket, key=name)
                    continue
                nb.record_delete(key)
                count += 1
                _say(args, f"delete: s3://{nb.bucket}/{name} (delete marker {marker}; earlier versions kept)",
                     bucket=nb.bucket, key=name, stored_key=key, delete_marker_version_id=marker)  # fmt: skip
        finally:
            for nb in opened.values():
                nb.save()
    return _finish(args, "deleted", count, failures, 0, skips_fail=False)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "keygen": cmd_keygen,
    "encrypt": cmd_encrypt,
    "decrypt": cmd_decrypt,
    "upload": cmd_upload,
    "download": cmd_download,
    "verify": cmd_verify,
    "ls": cmd_ls,
    "sync": cmd_sync,
    "rm": cmd_rm,
}


def main(argv: Sequence[str] | None = None, *, prog: str = PROG, extra: Sequence[ExtraCommand] = ()) -> int:
    """Run one command; returns the exit code (never raises, never prints a traceback)."""
    parser = build_parser(prog=prog, extra=extra)
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
        return int(exit_.code or 0)
    args.reporter = Reporter(args.command, quiet=args.quiet, json_lines=args.json)
    # SIGTERM (a service stop, `kill`) takes the same clean path as Ctrl-C: multipart uploads
    # are aborted and temporary plaintext is discarded.
    previous = _interrupt_on_sigterm()
    try:
        commands = {**COMMANDS, **{spec.name: spec.run for spec in extra}}
        return commands[args.command](args)
    except TierAError as error:
        args.reporter.error(str(error), exit_code=error.exit_code)
        return error.exit_code
    except Interrupted as interrupted:
        args.reporter.error(interrupted.reason, exit_code=EXIT_INTERRUPTED, stored=interrupted.stored)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        args.reporter.error("interrupted (no partial plaintext was kept; an upload in progress was aborted)",
                            exit_code=EXIT_INTERRUPTED)  # fmt: skip
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug or an unexpected library error: still one line, no key material
        args.reporter.error(f"unexpected {type(error).__name__}: {' '.join(str(error).split())[:300]}",
                            exit_code=EXIT_FAILED)  # fmt: skip
        return EXIT_FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def _interrupt_on_sigterm() -> signal.Handlers | Callable | int | None:
    """Route SIGTERM to KeyboardInterrupt while a command runs (main thread only)."""
    try:
        return signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread (e.g. called from a worker): leave signals alone
        return None


def console_main() -> None:
    """Entry point of the `kommunmoln` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
