"""Secrets sealed for Postgres: AES-256-GCM under keys that are never in the database.

A sealed secret is `version (1 byte) | key id (8) | nonce (12) | ciphertext and tag`. The
key id says which held key opens it, so a keyring may hold several keys during a rotation:
it seals with the newest (the first) and opens with whichever the secret names. The
associated data binds the secret to its place (`repositories.passphrase_enc:<id>`), so a
sealed value copied to another row, or altered, does not open: it raises, never gives garbage.

Errors name the secret's place and the key's id, never the secret or a key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.exceptions import SecretDamaged, SecretKeyNotHeld

VERSION = 1
KEY_BYTES = 32  # AES-256
_ID_BYTES = 8
_NONCE_BYTES = 12  # a random 96-bit nonce per seal: safe far beyond the secrets a system keeps
_TAG_BYTES = 16
_HEADER = 1 + _ID_BYTES


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def key_text(key: bytes) -> str:
    """A key as text for BORGFLOW_SECRET_KEY or the key file (urlsafe base64)."""
    return base64.urlsafe_b64encode(key).decode("ascii")


def parse_key(text: str) -> bytes:
    """32 bytes from base64 text, urlsafe or standard (`openssl rand -base64 32`), padding optional.

    The ValueError names what is wrong, never the text itself.
    """
    cleaned = text.strip().replace("+", "-").replace("/", "_")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        key = base64.b64decode(cleaned.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("not base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{len(key)} bytes where a key has {KEY_BYTES} (make one with `openssl rand -base64 32`)")
    return key


def key_id(key: bytes) -> bytes:
    # A hash of a random 256-bit key tells nothing about it, and needs no id stored beside the key.
    return hashlib.sha256(b"borgflow secret key id\0" + key).digest()[:_ID_BYTES]


def label(kid: bytes) -> str:
    """How a key is named in messages and logs: `k-` and its id in hex."""
    return "k-" + kid.hex()


def key_label(key: bytes) -> str:
    return label(key_id(key))


def sealed_key_label(sealed: bytes) -> str:
    """The label of the key a sealed secret names (no key needed)."""
    return label(sealed[1:_HEADER])


@dataclass(frozen=True)
class Keyring:
    """Keys, newest first; `source` says where they came from, for the messages of errors."""

    keys: tuple[bytes, ...]
    source: str

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a keyring needs a key")

    @classmethod
    def of(cls, keys: Sequence[bytes], source: str) -> Keyring:
        return cls(tuple(dict.fromkeys(keys)), source)  # duplicates dropped, order kept

    @property
    def labels(self) -> list[str]:
        return [key_label(k) for k in self.keys]

    @property
    def newest_label(self) -> str:
        return key_label(self.keys[0])

    def holds(self, sealed: bytes) -> bool:
        return self._key_for(sealed[1:_HEADER]) is not None

    def seal(self, plaintext: str, context: str) -> bytes:
        """`plaintext` encrypted under the newest key, bound to `context` (where it is stored)."""
        key = self.keys[0]
        header = bytes([VERSION]) + key_id(key)
        nonce = os.urandom(_NONCE_BYTES)
        return header + nonce + AESGCM(key).encrypt(nonce, plaintext.encode(), header + context.encode())

    def open(self, sealed: bytes, context: str, what: str) -> str:
        """The secret `seal` was given, or SecretKeyNotHeld / SecretDamaged naming `what` (e.g.
        "the passphrase of repository r1")."""
        if len(sealed) < _HEADER + _NONCE_BYTES + _TAG_BYTES or sealed[0] != VERSION:
            raise SecretDamaged(f"{what} is not stored in a form this borgflow reads: set it again")
        header, rest = sealed[:_HEADER], sealed[_HEADER:]
        nonce, body = rest[:_NONCE_BYTES], rest[_NONCE_BYTES:]
        kid = header[1:]
        key = self._key_for(kid)
        if key is None:
            raise SecretKeyNotHeld(
                f"{what} was encrypted with key {label(kid)}, which {self.source} does not hold"
                f" (it holds {', '.join(self.labels)}): set the key it was encrypted with"
            )
        try:
            plain = AESGCM(key).decrypt(nonce, body, header + context.encode())
            return plain.decode()
        except (InvalidTag, UnicodeDecodeError):
            raise SecretDamaged(
                f"{what} does not decrypt with key {label(kid)}, the key it names: it was altered or copied"
                " from another row; set it again"
            ) from None

    def _key_for(self, kid: bytes) -> bytes | None:
        return next((k for k in self.keys if key_id(k) == kid), None)
