"""Key custody for tier A: the workshop key file, the escrow RSA key pair, and the keyring.

A wrapping key is identified by a key namespace (the ESDK "provider id") and a key name
(the ESDK "key id"). Any AWS Encryption SDK implementation given the same namespace, name
and 32 bytes of key material reads our messages (the exit path, docs/use-case-1.md).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import os
import re
import secrets
import stat
from pathlib import Path

from aws_encryption_sdk.exceptions import InvalidKeyIdError
from aws_encryption_sdk.identifiers import EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.base import MasterKey, MasterKeyProvider, MasterKeyProviderConfig
from aws_encryption_sdk.key_providers.raw import RawMasterKey, RawMasterKeyConfig
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kommunmoln import names
from kommunmoln.config import DEFAULTS
from kommunmoln.tier_a.errors import KeyFileError, UsageError

DEFAULT_NAMESPACE: str = DEFAULTS["tier_a_key_namespaces"][0]
KEY_BYTES = 32  # AES-256
KEY_FILE_FIELDS = ("namespace", "name", "material_b64")
MAX_KEY_FILE_BYTES = 4096
MAX_PEM_BYTES = 64 * 1024
ESCROW_RSA_BITS = 4096
ESCROW_NAME_PREFIX = "escrow-rsa-"
# The same pattern as config.py's key namespaces; key names follow it too.
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
AES_WRAPPING = WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING
RSA_WRAPPING = WrappingAlgorithm.RSA_OAEP_SHA256_MGF1


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _IDENTIFIER.fullmatch(namespace):
        raise UsageError(f"key namespace {namespace!r} must be 1-128 letters, digits and ._:/- (starting alphanumeric)")
    if namespace.lower().startswith("aws-"):
        # aws-kms would mean AWS can unwrap the data key; the ESDK reserves aws-* provider ids.
        raise UsageError(
            f"key namespace {namespace!r} is reserved by AWS; a municipality namespace must not start with 'aws-'"
        )
    return namespace


def check_key_name(name: str) -> str:
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise UsageError(f"key name {name!r} must be 1-128 letters, digits and ._:/- (starting alphanumeric)")
    return name


def default_key_name() -> str:
    """A fresh, dated key name such as `tier-a-20260301-3f9c` (rotation = a new name)."""
    return f"tier-a-{_dt.datetime.now(_dt.UTC):%Y%m%d}-{secrets.token_hex(2)}"


# --- The raw AES-256 wrapping key --------------------------------------------------------
class RawAesKey:
    """A raw AES-256 wrapping key: namespace, name and material. `repr` never shows material."""

    __slots__ = ("__material", "name", "namespace")

    def __init__(self, namespace: str, name: str, material: bytes) -> None:
        self.namespace = check_namespace(namespace)
        self.name = check_key_name(name)
        if not isinstance(material, bytes | bytearray) or len(material) != KEY_BYTES:
            raise KeyFileError(f"key material must be exactly {KEY_BYTES} bytes (AES-256)")
        self.__material = bytes(material)

    @classmethod
    def generate(cls, namespace: str = DEFAULT_NAMESPACE, name: str | None = None) -> RawAesKey:
        return cls(namespace, name or default_key_name(), AESGCM.generate_key(bit_length=256))

    def material(self) -> bytes:
        """The key bytes, for building an ESDK master key. Never print or log the result."""
        return self.__material

    def master_key(self) -> RawMasterKey:
        """The ESDK raw AES master key (the "raw AES keyring" of the other ESDKs)."""
        return raw_aes_master_key(self.namespace, self.name, self.__material)

    def __repr__(self) -> str:
        return f"RawAesKey(namespace={self.namespace!r}, name={self.name!r}, material=<{KEY_BYTES} bytes hidden>)"

    __str__ = __repr__

    def __reduce__(self):  # no pickling of key material
        raise TypeError("RawAesKey cannot be pickled")


def raw_aes_master_key(namespace: str, name: str, material: bytes) -> RawMasterKey:
    """A plain ESDK RawMasterKey, exactly what any other program would build from the key file."""
    return RawMasterKey(
        config=RawMasterKeyConfig(
            key_id=name.encode("utf-8"),
            provider_id=namespace,
            wrapping_key=WrappingKey(
                wrapping_algorithm=AES_WRAPPING, wrapping_key=material, wrapping_key_type=EncryptionKeyType.SYMMETRIC
            ),
        )
    )


# Windows has no POSIX mode bits (st_mode reports 0o666 for every writable file, and
# os.fchmod only exists there from Python 3.13): access to a key file is governed by its
# ACL, which the operator restricts (README, "Supported platforms"). The 0600 check and the
# fchmod apply where the modes mean something.
POSIX_PERMISSIONS = os.name == "posix"


def _mode_problem(path: Path, mode: int) -> str | None:
    if not POSIX_PERMISSIONS:
        return None
    if mode & 0o077:
        return f"{path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
    return None


def _read_private_file(path: Path, *, what: str, limit: int) -> bytes:
    """Read a secret file, refusing it unless it is a regular file readable by its owner only."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise KeyFileError(f"{what} {path} is a directory") from None
    except OSError as error:
        raise KeyFileError(f"cannot open {what} {path}: {error.strerror}") from None
    try:
        info = os.fstat(fd)  # checks the file we actually read (no race with a rename)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{what} {path} is not a regular file")
        problem = _mode_problem(path, info.st_mode)
        if problem:
            raise KeyFileError(f"refusing {what}: {problem}")
        if info.st_size > limit:
            raise KeyFileError(f"{what} {path} is too large to be a key ({info.st_size} bytes)")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(limit + 1)
    finally:
        os.close(fd)


def load_key_file(path: str | os.PathLike[str]) -> RawAesKey:
    """Load a workshop key file: JSON {"namespace","name","material_b64"}, mode 0600."""
    path = Path(path)
    raw = _read_private_file(path, what="key file", limit=MAX_KEY_FILE_BYTES)
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyFileError(f"key file {path} is not valid JSON") from None
    if not isinstance(document, dict):
        raise KeyFileError(f"key file {path} must hold a JSON object with {', '.join(KEY_FILE_FIELDS)}")
    missing = [f for f in KEY_FILE_FIELDS if f not in document]
    unknown = sorted(set(document) - set(KEY_FILE_FIELDS))
    if missing or unknown:
        detail = f"missing {', '.join(missing)}" if missing else f"unknown field {', '.join(unknown)}"
        raise KeyFileError(f"key file {path}: {detail} (expected exactly {', '.join(KEY_FILE_FIELDS)})")
    if not all(isinstance(document[f], str) for f in KEY_FILE_FIELDS):
        raise KeyFileError(f"key file {path}: {', '.join(KEY_FILE_FIELDS)} must be strings")
    try:
        material = base64.b64decode(document["material_b64"], validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"key file {path}: material_b64 is not valid base64") from None
    if len(material) != KEY_BYTES:
        raise KeyFileError(f"key file {path}: material is {len(material)} bytes, expected {KEY_BYTES} (AES-256)")
    try:
        return RawAesKey(document["namespace"], document["name"], material)
    except UsageError as error:
        raise KeyFileError(f"key file {path}: {error}") from None


def _create_private(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600, failing if it exists (O_EXCL: never overwrite a key)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} already exists; refusing to overwrite a key") from None
    except OSError as error:
        raise UsageError(f"cannot create {path}: {error.strerror}") from None
    try:
        if POSIX_PERMISSIONS:
            os.fchmod(fd, 0o600)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def write_key_file(path: str | os.PathLike[str], key: RawAesKey) -> Path:
    """Write a workshop key file with mode 0600 (refuses to overwrite)."""
    path = Path(path)
    document = {
        "namespace": key.namespace,
        "name": key.name,
        "material_b64": base64.b64encode(key.material()).decode("ascii"),
    }
    _create_private(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))
    return path


# --- Escrow: an RSA key pair whose private half stays offline -------------------------------
def escrow_key_name(public_key: rsa.RSAPublicKey) -> str:
    """The escrow key's name: derived from the public key, so the private key alone finds it."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return ESCROW_NAME_PREFIX + hashlib.sha256(der).hexdigest()[:16]


def write_escrow_pair(prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Create PREFIX.pub.pem (public, 0644) and PREFIX.key.pem (private, 0600) for workshops."""
    private_path = Path(f"{prefix}.key.pem")
    public_path = Path(f"{prefix}.pub.pem")
    for path in (private_path, public_path):
        if path.exists():
            raise UsageError(f"{path} already exists; refusing to overwrite a key")
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=ESCROW_RSA_BITS)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _create_private(private_path, private_pem)
    try:
        public_path.write_bytes(public_pem)
    except OSError as error:
        private_path.unlink(missing_ok=True)
        raise UsageError(f"cannot create {public_path}: {error.strerror}") from None
    return public_path, private_path


class EscrowPublicKey:
    """The escrow RSA public key used to wrap every data key a second time (OAEP-SHA256)."""

    def __init__(self, pem: bytes, *, namespace: str, source: str = "escrow public key") -> None:
        try:
            public_key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError):
            raise KeyFileError(f"{source} is not a PEM public key") from None
        if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size < 3072:
            raise KeyFileError(f"{source} must be an RSA public key of at least 3072 bits")
        self.namespace = check_namespace(namespace)
        self.name = escrow_key_name(public_key)
        self._pem = pem

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, namespace: str) -> EscrowPublicKey:
        path = Path(path)
        try:
            pem = path.read_bytes()[:MAX_PEM_BYTES]
        except FileNotFoundError:
            raise KeyFileError(f"escrow public key {path} does not exist") from None
        except OSError as error:
            raise KeyFileError(f"cannot read escrow public key {path}: {error.strerror}") from None
        return cls(pem, namespace=namespace, source=f"escrow public key {path}")

    def master_key(self) -> RawMasterKey:
        return RawMasterKey(
            config=RawMasterKeyConfig(
                key_id=self.name.encode("utf-8"),
                provider_id=self.namespace,
                wrapping_key=WrappingKey(
                    wrapping_algorithm=RSA_WRAPPING, wrapping_key=self._pem, wrapping_key_type=EncryptionKeyType.PUBLIC
                ),
            )
        )

    def __repr__(self) -> str:
        return f"EscrowPublicKey(namespace={self.namespace!r}, name={self.name!r})"


class EscrowPrivateKey:
    """The offline escrow private key, for recovery. `repr` never shows it."""

    __slots__ = ("__pem", "name")

    def __init__(self, pem: bytes, *, source: str = "escrow private key") -> None:
        passphrase = os.environ.get(names.ENV_ESCROW_PASSPHRASE)
        try:
            private_key = serialization.load_pem_private_key(pem, password=passphrase.encode() if passphrase else None)
        except TypeError:
            raise KeyFileError(
                f"{source} is encrypted: put its passphrase in {names.ENV_ESCROW_PASSPHRASE}"
                if not passphrase
                else f"{source} is not encrypted: unset {names.ENV_ESCROW_PASSPHRASE}"
            ) from None
        except ValueError:
            raise KeyFileError(f"{source} is not a PEM private key (or the passphrase is wrong)") from None
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise KeyFileError(f"{source} must be an RSA private key")
        self.name = escrow_key_name(private_key.public_key())
        # The ESDK's WrappingKey wants PEM; re-serialize unencrypted in memory only.
        self.__pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EscrowPrivateKey:
        path = Path(path)
        pem = _read_private_file(path, what="escrow private key", limit=MAX_PEM_BYTES)
        return cls(pem, source=f"escrow private key {path}")

    def master_key(self, namespace: str) -> RawMasterKey:
        return RawMasterKey(
            config=RawMasterKeyConfig(
                key_id=self.name.encode("utf-8"),
                provider_id=namespace,
                wrapping_key=WrappingKey(
                    wrapping_algorithm=RSA_WRAPPING,
                    wrapping_key=self.__pem,
                    wrapping_key_type=EncryptionKeyType.PRIVATE,
                ),
            )
        )

    def __repr__(self) -> str:
        return f"EscrowPrivateKey(name={self.name!r}, key=<hidden>)"

    def __reduce__(self):
        raise TypeError("EscrowPrivateKey cannot be pickled")


# --- The keyring: the primary wrapping key plus optional escrow ---------------------------------
class Keyring(MasterKeyProvider):
    """An ESDK master key provider holding our master keys, in order.

    The first key generates the data key; every other key wraps it too (so with escrow each
    message carries two encrypted data keys). On decryption any member that owns one of the
    message's encrypted data keys may unwrap it.
    """

    provider_id = "kommunmoln-keyring"  # never written into messages
    _config_class = MasterKeyProviderConfig
    vend_masterkey_on_decrypt = False

    def __init__(self, *master_keys: MasterKey) -> None:  # attrs-style config is built in __new__
        pass

    def __new__(cls, *master_keys: MasterKey) -> Keyring:
        instance = super().__new__(cls)
        for master_key in master_keys:
            instance.add_master_key_provider(master_key)
        return instance

    @property
    def master_keys(self) -> tuple[MasterKey, ...]:
        return tuple(self._members)

    def describe(self) -> str:
        return ", ".join(f"{m.provider_id}/{m.key_id.decode('utf-8', 'replace')}" for m in self._members)

    def _new_master_key(self, key_id):
        raise InvalidKeyIdError("this keyring only holds the keys it was built with")

    def __repr__(self) -> str:
        return f"Keyring({self.describe()})"
