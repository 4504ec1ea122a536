"""Signed chain heads: Ed25519 signatures over a head of the hash chain.

A signed head says "event ``head_id`` of this log had hash ``head_hash``", and only the holder of
the private key can say it. The signed bytes are defined here once, in ``signed_bytes``, so an
auditor can check a head with any Ed25519 library (docs/security.md, "Signed chain heads").
A key is named by its key id: the first 16 hex digits of SHA-256 over the raw 32-byte public key.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "HeadSigner",
    "PublicKeys",
    "SignedHead",
    "generate_key_file",
    "key_id_of",
    "load_public_key",
    "public_hex",
    "signed_bytes",
]

_DOMAIN = b"runtrack chain head v1\n"
"""Keeps a head's signature from meaning anything else the same key might sign."""
_DOMAIN_V2 = b"runtrack chain head v2\n"
"""A head that also signs where the log's chain v2 starts (``chain_v2_from``)."""
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")


def signed_bytes(head_id: int, head_hash: str, chain_v2_from: int | None = None) -> bytes:
    """Exactly what is signed, in ASCII, ids in decimal without leading zeros and the hash as 64
    lower-case hex digits: ``runtrack chain head v2\\n<head_id>\\n<head_hash>\\n<chain_v2_from>\\n``
    (the first id hashed with chain v2), or without a cutover (heads signed before chain v2)
    ``runtrack chain head v1\\n<head_id>\\n<head_hash>\\n``."""
    if chain_v2_from is None:
        return _DOMAIN + f"{head_id}\n{head_hash}\n".encode("ascii")
    return _DOMAIN_V2 + f"{head_id}\n{head_hash}\n{chain_v2_from}\n".encode("ascii")


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


def public_hex(public: Ed25519PublicKey) -> str:
    """The public key as it is printed and given back: its 32 raw bytes in hex."""
    return _raw(public).hex()


@dataclass(frozen=True)
class SignedHead:
    """A head and its signature: a ``chain_head`` payload, and what ``GET /v1/audit/head``
    answers (with the id of the ``chain_head`` event that carries it)."""

    head_id: int
    head_hash: str
    signature: str
    key_id: str
    chain_v2_from: int | None = None
    """The first event hashed with chain v2, which the signature covers too (None: a head
    signed before chain v2)."""

    @classmethod
    def from_json(cls, data: Any) -> SignedHead:
        """Read a kept head (a ``GET /v1/audit/head`` answer); ValueError naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("a signed head is a JSON object")
        head_id, head_hash = data.get("head_id"), data.get("head_hash")
        signature, key_id = data.get("signature"), data.get("key_id")
        if not isinstance(head_id, int) or isinstance(head_id, bool) or head_id < 1:
            raise ValueError("a signed head's head_id must be an integer of at least 1")
        if not isinstance(head_hash, str) or not _HEX64.fullmatch(head_hash):
            raise ValueError("a signed head's head_hash must be 64 lower-case hex digits")
        if not isinstance(signature, str) or not _HEX128.fullmatch(signature):
            raise ValueError("a signed head's signature must be 128 lower-case hex digits")
        if not isinstance(key_id, str) or not key_id:
            raise ValueError("a signed head needs its key_id")
        cutover = data.get("chain_v2_from")
        if cutover is not None and (
            not isinstance(cutover, int) or isinstance(cutover, bool) or cutover < 1
        ):
            raise ValueError("a signed head's chain_v2_from must be an integer of at least 1")
        return cls(head_id, head_hash, signature, key_id, cutover)

    def payload(self) -> dict[str, Any]:
        return {
            "head_id": self.head_id,
            "head_hash": self.head_hash,
            "signature": self.signature,
            "key_id": self.key_id,
        } | ({} if self.chain_v2_from is None else {"chain_v2_from": self.chain_v2_from})


class HeadSigner:
    """The server's signing key: signs heads of the chain as the leader appends them."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id_of(self.public)

    @classmethod
    def from_file(cls, path: str | Path) -> HeadSigner:
        """A PEM (PKCS #8) Ed25519 private key, as ``runtrack audit keygen`` writes it."""
        try:
            private = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"cannot read the signing key {path}: {exc}") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"the signing key {path} is not an Ed25519 private key")
        return cls(private)

    def sign(self, head_id: int, head_hash: str, chain_v2_from: int | None = None) -> SignedHead:
        signed = signed_bytes(head_id, head_hash, chain_v2_from)
        signature = self._private.sign(signed).hex()
        return SignedHead(head_id, head_hash, signature, self.key_id, chain_v2_from)


def generate_key_file(path: str | Path) -> HeadSigner:
    """Write a new private key to ``path`` (mode 0600, never over an existing file)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    return HeadSigner(private)


def load_public_key(value: str) -> Ed25519PublicKey:
    """A public key given as 64 hex digits, or a file holding them or a PEM public key."""
    text = value.strip()
    if not _HEX64.fullmatch(text.lower()):
        try:
            text = Path(value).read_text().strip()
        except OSError as exc:
            raise ValueError(
                f"a public key is 64 hex digits or a file holding them; cannot read {value!r}"
            ) from exc
    if _HEX64.fullmatch(text.lower()):
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    try:
        public = serialization.load_pem_public_key(text.encode())
    except ValueError as exc:
        raise ValueError(f"{value} holds neither 64 hex digits nor a PEM public key") from exc
    if not isinstance(public, Ed25519PublicKey):
        raise ValueError(f"{value} is not an Ed25519 public key")
    return public


class PublicKeys:
    """The public keys a verifier trusts, by key id."""

    def __init__(self, keys: list[Ed25519PublicKey] | tuple[Ed25519PublicKey, ...] = ()) -> None:
        self._by_id = {key_id_of(key): key for key in keys}

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def knows(self, key_id: str) -> bool:
        return key_id in self._by_id

    def problem(self, head: SignedHead) -> str | None:
        """Why ``head``'s signature does not hold, or None when it does."""
        key = self._by_id.get(head.key_id)
        if key is None:
            return f"signed by key {head.key_id}, which is not among the given public keys"
        try:
            signed = signed_bytes(head.head_id, head.head_hash, head.chain_v2_from)
            key.verify(bytes.fromhex(head.signature), signed)
        except (InvalidSignature, ValueError):
            return f"the signature of the head of event {head.head_id} does not verify"
        return None
