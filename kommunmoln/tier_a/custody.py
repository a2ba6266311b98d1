"""Choose the key custody for a command: key file, PKCS#11 HSM, escrow (recovery), or several.

Two escrow options, both wrapping every data key a second time:
- RSA escrow (`escrow_public_key`): only the public key is needed to encrypt, so the escrow
  private key never has to be online. RSA-OAEP is not quantum-resistant: a stored message is
  exposed to "harvest now, decrypt later" for as long as its RSA-wrapped data key exists.
- symmetric escrow (`escrow_key_file`): a second AES-256 key file (same format as the primary,
  its own name), kept offline between uses. AES-256 key wrapping keeps its margin against
  quantum search (Grover halves the effective key length), so this is the option for
  information whose secrecy runs for decades; the price is that the escrow key must be
  present whenever data is encrypted, so it is offline only between encryption sessions.

Several wrapping keys at once (key rotation): the primary key (the first `--key`, or the
HSM key when the `--pkcs11-*` options are given) encrypts; every further key file and HSM
key label is accepted for decryption only. Decryption offers the ESDK all of them in one
keyring, and the ESDK unwraps whichever encrypted data key one of them owns. Two keys with
the same namespace and name are refused: the ESDK would treat them as one key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from kommunmoln import names
from kommunmoln.tier_a.codec import HeaderSummary
from kommunmoln.tier_a.errors import DecryptionError, UsageError
from kommunmoln.tier_a.keys import (
    DEFAULT_NAMESPACE,
    EscrowPrivateKey,
    EscrowPublicKey,
    Keyring,
    RawAesKey,
    check_namespace,
    load_key_file,
)

_NO_KEY = "no key given: use --key KEYFILE, the --pkcs11-* options, --escrow-private-key PEM or --escrow-key KEYFILE"


def _primary_name(options: CustodyOptions, key_name: str | None) -> str | None:
    """The primary key's name: the key file's, or the HSM key label."""
    return key_name if key_name is not None else options.pkcs11_key_label


@dataclass
class CustodyOptions:
    """What the caller said about keys (CLI flags, or the KOMMUNMOLN_* environment defaults)."""

    key_file: str | None = None
    pkcs11_lib: str | None = None
    pkcs11_token: str | None = None
    pkcs11_key_label: str | None = None
    pkcs11_pin_env: str = names.ENV_PKCS11_PIN
    namespace: str = DEFAULT_NAMESPACE  # of an HSM key (a key file carries its own)
    escrow_public_key: str | None = None
    escrow_private_key: str | None = None
    escrow_key_file: str | None = None  # symmetric escrow: a second AES key file, kept offline between uses
    # Key rotation: further wrapping keys accepted for decryption only (never to encrypt).
    decrypt_key_files: tuple[str, ...] = ()
    decrypt_pkcs11_labels: tuple[str, ...] = ()  # on the same token as the primary HSM key

    @property
    def uses_hsm(self) -> bool:
        return bool(self.pkcs11_lib or self.pkcs11_token or self.pkcs11_key_label)


@dataclass
class Custody:
    """The opened keys. Close it to end the HSM session."""

    primary: object | None  # the primary ESDK master key (None in pure escrow recovery)
    namespace: str
    escrow_public: EscrowPublicKey | None = None
    escrow_private: EscrowPrivateKey | None = None
    description: str = ""
    escrow_aes: RawAesKey | None = None  # symmetric escrow (see the module docstring)
    decrypt_only: tuple[object, ...] = ()  # older wrapping keys: they decrypt, never encrypt
    _closers: list = field(default_factory=list)

    def encrypting_keyring(self) -> Keyring:
        if self.primary is None:
            raise UsageError("encryption needs the primary key: give --key KEYFILE or the --pkcs11-* options")
        keys = [self.primary]
        if self.escrow_public is not None:
            keys.append(self.escrow_public.master_key())
        if self.escrow_aes is not None:
            keys.append(self.escrow_aes.master_key())
        return Keyring(*keys)

    def decrypting_keyring(self, header: HeaderSummary | None = None) -> Keyring:
        keys = [self.primary] if self.primary is not None else []
        keys.extend(self.decrypt_only)
        if self.escrow_private is not None:
            keys.extend(self._escrow_keys(header))
        if self.escrow_aes is not None:
            keys.append(self.escrow_aes.master_key())
        if not keys:
            raise UsageError(_NO_KEY)
        return Keyring(*keys)

    def _escrow_keys(self, header: HeaderSummary | None) -> Iterable[object]:
        assert self.escrow_private is not None
        if header is None:
            return [self.escrow_private.master_key(self.namespace)]
        namespaces = [ns for ns, name in header.wrapping_keys if name == self.escrow_private.name]
        if not namespaces and self.primary is None:
            raise DecryptionError(
                f"the message has no data key for escrow key {self.escrow_private.name} "
                "(it was encrypted without --escrow-public-key, or for another escrow key)"
            )
        return [self.escrow_private.master_key(ns) for ns in dict.fromkeys(namespaces)]

    def encrypting_names(self) -> frozenset[tuple[str, str]]:
        """(namespace, name) of every key the encrypting keyring wraps a data key for."""
        return frozenset(_key_names(self.encrypting_keyring().master_keys))

    def decrypt_only_names(self) -> frozenset[tuple[str, str]]:
        """(namespace, name) of the older keys, accepted for decryption only."""
        return frozenset(_key_names(self.decrypt_only))

    @property
    def needs_header(self) -> bool:
        """Escrow recovery reads the header first, to find the escrow key's namespace."""
        return self.escrow_private is not None

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Custody:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _key_names(master_keys: Iterable[object]) -> list[tuple[str, str]]:
    return [(m.provider_id, m.key_id.decode("utf-8", "replace")) for m in master_keys]  # type: ignore[attr-defined]


def _open_hsm(options: CustodyOptions, label: str, pin: str) -> tuple[object, object]:
    from kommunmoln.tier_a.pkcs11_key import open_hsm_key

    return open_hsm_key(
        lib_path=options.pkcs11_lib, token_label=options.pkcs11_token, pin=pin, key_label=label,
        namespace=options.namespace,
    )  # fmt: skip


def _open_decrypt_only(options: CustodyOptions, pin: str | None, closers: list) -> list[object]:
    """The older keys of a rotation: key files and HSM labels accepted for decryption only."""
    keys: list[object] = [load_key_file(path).master_key() for path in options.decrypt_key_files]
    if options.decrypt_pkcs11_labels and not pin:
        raise UsageError("further --pkcs11-key-label keys need the token (the --pkcs11-* options and the PIN)")
    for label in options.decrypt_pkcs11_labels:
        hsm, master_key = _open_hsm(options, label, pin or "")
        closers.append(hsm.close)  # type: ignore[attr-defined]
        keys.append(master_key)
    return keys


def _refuse_same_names(master_keys: list[object]) -> None:
    seen: set[tuple[str, str]] = set()
    for name in _key_names(master_keys):
        if name in seen:
            raise UsageError(
                f"two of the given keys are both named {name[0]}/{name[1]}; the ESDK would treat them as one key "
                "(give each key once; a new key needs its own --name)"
            )
        seen.add(name)


def open_custody(options: CustodyOptions, *, need_primary: bool) -> Custody:
    """Open the keys named by `options`. Raises UsageError/KeyFileError/HsmError (and closes what it opened)."""
    closers: list = []
    try:
        return _open_custody(options, need_primary=need_primary, closers=closers)
    except BaseException:
        while closers:
            closers.pop()()
        raise


def _open_custody(options: CustodyOptions, *, need_primary: bool, closers: list) -> Custody:
    """Open the keys named by `options`. Raises UsageError/KeyFileError/HsmError."""
    check_namespace(options.namespace)
    if options.uses_hsm and options.key_file:
        raise UsageError(
            "give either --key (key file) or the --pkcs11-* options (HSM) as the encrypting key, not both "
            "(with the --pkcs11-* options, older key files are given as decrypt-only keys)"
        )
    primary = None
    key_name: str | None = None
    namespace = options.namespace
    description = ""
    pin: str | None = None
    if options.uses_hsm:
        missing = [
            flag
            for flag, value in (
                ("--pkcs11-lib", options.pkcs11_lib),
                ("--pkcs11-token", options.pkcs11_token),
                ("--pkcs11-key-label", options.pkcs11_key_label),
            )
            if not value
        ]
        if missing:
            raise UsageError(f"HSM custody needs {', '.join(missing)}")
        pin = os.environ.get(options.pkcs11_pin_env)
        if not pin:
            raise UsageError(f"set the token's user PIN in the environment variable {options.pkcs11_pin_env}")
        hsm, primary = _open_hsm(options, options.pkcs11_key_label or "", pin)
        closers.append(hsm.close)  # type: ignore[attr-defined]
        description = f"HSM key {options.namespace}/{options.pkcs11_key_label} on token {options.pkcs11_token!r}"
    elif options.key_file:
        key = load_key_file(options.key_file)
        primary = key.master_key()
        namespace = key.namespace
        key_name = key.name
        description = f"key file {options.key_file} ({key.namespace}/{key.name})"
    elif need_primary:
        raise UsageError(
            f"no key given: use --key KEYFILE (or the --pkcs11-* options); {names.ENV_KEY_FILE} sets a default key file"
        )
    decrypt_only = _open_decrypt_only(options, pin, closers)
    _refuse_same_names(([primary] if primary is not None else []) + decrypt_only)
    if decrypt_only:
        described = ", ".join(f"{ns}/{name}" for ns, name in _key_names(decrypt_only))
        description = (description + " + " if description else "") + f"decrypt-only {described}"
    escrow_public = (
        EscrowPublicKey.load(options.escrow_public_key, namespace=namespace) if options.escrow_public_key else None
    )
    escrow_private = EscrowPrivateKey.load(options.escrow_private_key) if options.escrow_private_key else None
    escrow_aes = load_key_file(options.escrow_key_file) if options.escrow_key_file else None
    if escrow_aes is not None:
        same = (escrow_aes.namespace, escrow_aes.name) == (namespace, _primary_name(options, key_name))
        if same and primary is not None:
            # The same (namespace, name) would make the ESDK treat both as one key: no second copy.
            raise UsageError(
                f"the escrow key file {options.escrow_key_file} has the primary key's name "
                f"{escrow_aes.namespace}/{escrow_aes.name}: create the escrow key with its own --name"
            )
    if primary is None and escrow_private is None and escrow_aes is None and not decrypt_only and not need_primary:
        raise UsageError(_NO_KEY)
    if escrow_private is not None:
        description = (description + " + " if description else "") + f"escrow private key {escrow_private.name}"
    if escrow_aes is not None:
        description = (description + " + " if description else "") + (
            f"symmetric escrow key {escrow_aes.namespace}/{escrow_aes.name}"
        )
    custody = Custody(
        primary, namespace, escrow_public, escrow_private, description, escrow_aes=escrow_aes,
        decrypt_only=tuple(decrypt_only),
    )  # fmt: skip
    custody._closers = closers
    return custody
