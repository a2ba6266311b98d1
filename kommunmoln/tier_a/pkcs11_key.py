"""Key custody in a PKCS#11 HSM: the AES-256 wrapping key never leaves the token.

`HsmAesMasterKey` is an ESDK master key whose encrypted data keys are byte-for-byte in the
format of the ESDK raw AES keyring (provider id = key namespace, key info = key name ||
tag bits || IV length || IV, ciphertext || tag, AAD = the serialized encryption context),
but the AES-GCM wrap and unwrap run inside the token (CKM_AES_GCM). So a message wrapped in
the HSM decrypts with a raw AES key of the same material, and the reverse, while in
production the material is generated inside the token as sensitive and non-extractable.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from pathlib import Path

import attr
from aws_encryption_sdk.exceptions import DecryptKeyError, EncryptKeyError
from aws_encryption_sdk.internal.formatting.encryption_context import serialize_encryption_context
from aws_encryption_sdk.internal.str_ops import to_str
from aws_encryption_sdk.key_providers.base import MasterKey, MasterKeyConfig
from aws_encryption_sdk.structures import DataKey, EncryptedDataKey, MasterKeyInfo

from kommunmoln.tier_a.errors import HsmError, UsageError
from kommunmoln.tier_a.keys import DEFAULT_NAMESPACE, check_key_name, check_namespace

GCM_IV_BYTES = 12
GCM_TAG_BITS = 128


def _pkcs11():
    try:
        import pkcs11
    except ImportError:  # pragma: no cover - python-pkcs11 is in requirements.txt
        raise HsmError("python-pkcs11 is not installed (pip install -r requirements.txt)") from None
    return pkcs11


class Pkcs11AesKey:
    """An open session on a token and a handle to one AES key in it (thread-safe).

    The PIN is read from an environment variable by the caller and never stored here.
    """

    def __init__(self, *, lib_path: str, token_label: str, pin: str, key_label: str) -> None:
        pkcs11 = _pkcs11()
        self.lib_path = lib_path
        self.token_label = token_label
        self.key_label = key_label
        self._lock = threading.Lock()
        if not Path(lib_path).is_file():
            raise UsageError(f"PKCS#11 library {lib_path} does not exist")
        try:
            lib = pkcs11.lib(lib_path)
        except Exception as error:  # the loader raises plain RuntimeErrors
            raise HsmError(f"cannot load PKCS#11 library {lib_path}: {type(error).__name__}") from None
        try:
            token = lib.get_token(token_label=token_label)
        except pkcs11.exceptions.NoSuchToken:
            raise HsmError(f"no PKCS#11 token labelled {token_label!r} in {lib_path}") from None
        except pkcs11.exceptions.PKCS11Error as error:
            raise HsmError(f"cannot find token {token_label!r}: {type(error).__name__}") from None
        try:
            self._session = token.open(rw=True, user_pin=pin)
        except pkcs11.exceptions.UserAlreadyLoggedIn:
            # PKCS#11 login state is per application: another session of this process logged in.
            self._session = token.open(rw=True)
        except pkcs11.exceptions.PinIncorrect:
            raise HsmError(f"wrong PIN for token {token_label!r}") from None
        except pkcs11.exceptions.PinLocked:
            raise HsmError(f"the user PIN of token {token_label!r} is locked") from None
        except pkcs11.exceptions.PKCS11Error as error:
            raise HsmError(f"cannot log in to token {token_label!r}: {type(error).__name__}") from None
        self._key = None

    # -- key management --------------------------------------------------------------------
    def find_key(self) -> None:
        pkcs11 = _pkcs11()
        try:
            self._key = self._session.get_key(
                object_class=pkcs11.ObjectClass.SECRET_KEY, key_type=pkcs11.KeyType.AES, label=self.key_label
            )
        except pkcs11.exceptions.NoSuchKey:
            self.close()
            raise HsmError(f"no AES key labelled {self.key_label!r} on token {self.token_label!r}") from None
        except pkcs11.exceptions.MultipleObjectsReturned:
            self.close()
            raise HsmError(f"several AES keys are labelled {self.key_label!r} on token {self.token_label!r}") from None
        if self._key.key_length != 256:
            self.close()
            raise HsmError(f"key {self.key_label!r} is AES-{self._key.key_length}, expected AES-256")

    def generate_key(self) -> None:
        """Generate the wrapping key inside the token: AES-256, persistent, sensitive, non-extractable."""
        pkcs11 = _pkcs11()
        Attribute = pkcs11.Attribute
        existing = list(
            self._session.get_objects({Attribute.LABEL: self.key_label, Attribute.CLASS: pkcs11.ObjectClass.SECRET_KEY})
        )
        if existing:
            raise HsmError(f"token {self.token_label!r} already holds a key labelled {self.key_label!r}")
        try:
            self._key = self._session.generate_key(
                pkcs11.KeyType.AES,
                256,
                label=self.key_label,
                store=True,
                template={
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.ENCRYPT: True,
                    Attribute.DECRYPT: True,
                    Attribute.WRAP: False,
                    Attribute.UNWRAP: False,
                    Attribute.SIGN: False,
                    Attribute.VERIFY: False,
                    Attribute.DERIVE: False,
                },
            )
        except pkcs11.exceptions.PKCS11Error as error:
            raise HsmError(f"the token refused to generate the key: {type(error).__name__}") from None

    def attributes(self) -> dict[str, bool]:
        """The key's protection attributes (for checks and tests)."""
        pkcs11 = _pkcs11()
        key = self._require_key()
        return {
            "sensitive": bool(key[pkcs11.Attribute.SENSITIVE]),
            "extractable": bool(key[pkcs11.Attribute.EXTRACTABLE]),
            "never_extractable": bool(key[pkcs11.Attribute.NEVER_EXTRACTABLE]),
            "always_sensitive": bool(key[pkcs11.Attribute.ALWAYS_SENSITIVE]),
            "token": bool(key[pkcs11.Attribute.TOKEN]),
        }

    # -- AES-GCM inside the token ----------------------------------------------------------
    def _require_key(self):
        if self._key is None:
            raise HsmError("no HSM key selected")
        return self._key

    def gcm_encrypt(self, plaintext: bytes, *, iv: bytes, aad: bytes) -> bytes:
        """Ciphertext || tag, computed by the token."""
        pkcs11 = _pkcs11()
        key = self._require_key()
        with self._lock:
            return key.encrypt(
                plaintext,
                mechanism=pkcs11.Mechanism.AES_GCM,
                mechanism_param=pkcs11.mechanisms.GCMParams(iv, aad, GCM_TAG_BITS),
            )

    def gcm_decrypt(self, ciphertext_and_tag: bytes, *, iv: bytes, aad: bytes) -> bytes:
        pkcs11 = _pkcs11()
        key = self._require_key()
        with self._lock:
            return key.decrypt(
                ciphertext_and_tag,
                mechanism=pkcs11.Mechanism.AES_GCM,
                mechanism_param=pkcs11.mechanisms.GCMParams(iv, aad, GCM_TAG_BITS),
            )

    def close(self) -> None:
        session, self._session = getattr(self, "_session", None), None
        if session is not None:
            with contextlib.suppress(Exception):  # closing a dead session must not mask the real error
                session.close()

    def __repr__(self) -> str:
        return f"Pkcs11AesKey(lib={self.lib_path!r}, token={self.token_label!r}, key_label={self.key_label!r})"


@attr.s(hash=True)
class HsmAesMasterKeyConfig(MasterKeyConfig):
    """Config of `HsmAesMasterKey`: key_id (= key name), provider_id (= key namespace), hsm."""

    provider_id = attr.ib(hash=True, validator=attr.validators.instance_of((str, bytes)), converter=to_str)
    hsm = attr.ib(hash=False, eq=False, validator=attr.validators.instance_of(Pkcs11AesKey))


class HsmAesMasterKey(MasterKey):
    """ESDK master key whose AES-256-GCM wrapping runs inside a PKCS#11 token (raw-AES EDK format)."""

    provider_id = None
    _config_class = HsmAesMasterKeyConfig

    def __new__(cls, **kwargs):
        instance = super().__new__(cls, **kwargs)
        # The raw AES keyring's key info prefix: key name, tag length in bits, IV length.
        instance._key_info_prefix = struct.pack(
            f">{len(instance.key_id)}sII", instance.key_id, GCM_TAG_BITS, GCM_IV_BYTES
        )
        return instance

    def owns_data_key(self, data_key) -> bool:
        info = data_key.key_provider
        return (
            info.provider_id == self.provider_id
            and len(info.key_info) == len(self._key_info_prefix) + GCM_IV_BYTES
            and info.key_info.startswith(self._key_info_prefix)
        )

    def _generate_data_key(self, algorithm, encryption_context):
        plaintext_data_key = os.urandom(algorithm.kdf_input_len)
        encrypted = self._encrypt_data_key(
            DataKey(key_provider=self.key_provider, data_key=plaintext_data_key, encrypted_data_key=b""),
            algorithm,
            encryption_context,
        )
        return DataKey(
            key_provider=encrypted.key_provider,
            data_key=plaintext_data_key,
            encrypted_data_key=encrypted.encrypted_data_key,
        )

    def _encrypt_data_key(self, data_key, algorithm, encryption_context):
        iv = os.urandom(GCM_IV_BYTES)
        aad = serialize_encryption_context(encryption_context=encryption_context)
        try:
            wrapped = self.config.hsm.gcm_encrypt(data_key.data_key, iv=iv, aad=aad)
        except Exception as error:
            raise EncryptKeyError(f"the HSM could not wrap the data key: {type(error).__name__}") from None
        return EncryptedDataKey(
            key_provider=MasterKeyInfo(provider_id=self.provider_id, key_info=self._key_info_prefix + iv),
            encrypted_data_key=wrapped,
        )

    def _decrypt_data_key(self, encrypted_data_key, algorithm, encryption_context):
        iv = encrypted_data_key.key_provider.key_info[len(self._key_info_prefix) :]
        aad = serialize_encryption_context(encryption_context=encryption_context)
        try:
            plaintext = self.config.hsm.gcm_decrypt(encrypted_data_key.encrypted_data_key, iv=iv, aad=aad)
        except Exception as error:
            raise DecryptKeyError(f"the HSM could not unwrap the data key: {type(error).__name__}") from None
        if len(plaintext) != algorithm.kdf_input_len:
            raise DecryptKeyError("the unwrapped data key has the wrong length")
        return DataKey(
            key_provider=encrypted_data_key.key_provider,
            data_key=plaintext,
            encrypted_data_key=encrypted_data_key.encrypted_data_key,
        )


def open_hsm_key(
    *,
    lib_path: str,
    token_label: str,
    pin: str,
    key_label: str,
    namespace: str = DEFAULT_NAMESPACE,
    generate: bool = False,
) -> tuple[Pkcs11AesKey, HsmAesMasterKey]:
    """Open the token and return the key handle and its ESDK master key (key name = key label)."""
    check_namespace(namespace)
    check_key_name(key_label)
    hsm = Pkcs11AesKey(lib_path=lib_path, token_label=token_label, pin=pin, key_label=key_label)
    try:
        if generate:
            hsm.generate_key()
        else:
            hsm.find_key()
    except BaseException:
        hsm.close()
        raise
    master_key = HsmAesMasterKey(
        config=HsmAesMasterKeyConfig(key_id=key_label.encode("utf-8"), provider_id=namespace, hsm=hsm)
    )
    return hsm, master_key
