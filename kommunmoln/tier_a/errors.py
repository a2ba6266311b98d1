"""Errors of the tier A client. Every message is one line and never contains key material."""

from __future__ import annotations

EXIT_FAILED = 1  # an operation or a check failed (wrong key, tampered data, quarantined object, S3 error)
EXIT_USAGE = 2  # the input was wrong (missing file, bad key file, bad URL, unknown bucket, bad option)


class TierAError(Exception):
    """Base class: `str(error)` is a one-line reason fit for stderr; `exit_code` for the CLI."""

    exit_code = EXIT_FAILED

    def __init__(self, reason: str) -> None:
        super().__init__(" ".join(str(reason).split()))

    @property
    def reason(self) -> str:
        return str(self)


class UsageError(TierAError):
    """Bad input from the caller: a missing file, a bad URL, a malformed option."""

    exit_code = EXIT_USAGE


class KeyFileError(UsageError):
    """A key file (or escrow key file) that cannot be used: missing, too open, malformed."""


class HsmError(TierAError):
    """The PKCS#11 token could not be opened or the key could not be found or used."""


class DecryptionError(TierAError):
    """A message could not be decrypted and authenticated. No plaintext file is left behind."""


class ContextMismatchError(DecryptionError):
    """The message's encryption context does not match what the caller expects."""


class TransferError(TierAError):
    """An S3 transfer failed (multipart uploads are aborted before this is raised)."""


class ConflictError(TransferError):
    """A conditional write found the object changed since it was read (S3 412 PreconditionFailed)."""


class EncryptionError(TierAError):
    """A message could not be encrypted (e.g. the HSM refused to wrap the data key)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C / SIGTERM during a transfer, with what really happened to the object in flight.

    `stored` is True when S3 has the object (e.g. CompleteMultipartUpload had finished),
    False when nothing was stored (the multipart upload was aborted), None when it cannot
    be known (an interrupted PutObject whose result never arrived).
    """

    def __init__(self, reason: str, *, stored: bool | None) -> None:
        super().__init__(" ".join(str(reason).split()))
        self.stored = stored

    @property
    def reason(self) -> str:
        return str(self)
