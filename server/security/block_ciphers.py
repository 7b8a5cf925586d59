"""AES-CBC of every secured message through one OpenSSL context kept per cipher (a token's key in one direction),
not one per message.

asyncua 2.1.0 encrypts and decrypts each symmetric chunk (SignAndEncrypt) with `uacrypto.cipher_encrypt(cipher,
data)` and `cipher_decrypt`, which create a `cryptography` context (an OpenSSL cipher context and its key schedule)
for every message: about 4–5 µs each, a request's and its response's together a fifth of the server's chunk work
(bench/secure_chunks.py). The key and the IV stay the same for a security token's lifetime, and the only state CBC
carries from one block to the next is the previous ciphertext block, so a context kept per cipher serves every
message once one block in front of the message brings it back to the IV:

- decrypting: the IV itself, read as a ciphertext block; its plaintext is dropped, and the message's first block is
  XORed with the IV as in a fresh context;
- encrypting: the block D_K(IV) XOR S, with S the context's last ciphertext block (CBC feeds E_K with the block
  XOR S): it encrypts to E_K(D_K(IV)) = IV, which is dropped, and the message is chained from the IV.

Same bytes as a fresh context (tests/unit/test_block_ciphers.py). Anything else goes asyncua's way: empty data or
data that is not a whole number of blocks (a fresh context, whose `finalize` raises as it did, and the kept one
never holds a partial block), any algorithm or mode other than AES-CBC, and a kept context whose state is not
known for sure (an encryption broken off half-way, or a context that gave back other than a block per block): that
one is dropped, and the cipher's next message keeps a new one.

A kept context is used by one thread at a time: a cipher belongs to one secure connection, and a connection is
served by its event loop. Installed when the server is built and only over asyncua 2.1.0 (server/asyncua_pin.py);
process-wide like security/message_signatures.py, so an asyncua client in the same process (the CLI's) encrypts the
same way, with the same bytes.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

from asyncua.crypto import uacrypto
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from qualitybridge.server.asyncua_pin import INSTALLED_ASYNCUA_VERSION, PINNED_ASYNCUA_VERSION, asyncua_is_pinned

__all__ = ["cipher_decrypt", "cipher_encrypt", "install_fast_block_ciphers"]

_log = logging.getLogger(__name__)

_BLOCK = 16  # AES's block size in bytes, whatever the key size

# asyncua's own functions, for what the kept contexts do not take.
_fresh_encrypt: Callable[[Any, bytes], bytes] = uacrypto.cipher_encrypt
_fresh_decrypt: Callable[[Any, bytes], bytes] = uacrypto.cipher_decrypt


_UNSURE = b""  # a kept encryptor's last block while it encrypts, and after anything unexpected: not to be used again


class _Encrypting:
    """A kept CBC encryptor and what it needs to start each message from the IV."""

    __slots__ = ("_context", "_last_block", "_rewind_key")

    def __init__(self, cipher: Cipher[Any]) -> None:
        mode: Any = cipher.mode
        iv: bytes = mode.initialization_vector
        # D_K(IV): the block that encrypts to the IV when XORed with the context's last ciphertext block.
        key: bytes = cipher.algorithm.key  # type: ignore[attr-defined]
        ecb = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305 - one block, to find D_K(IV)
        self._rewind_key = int.from_bytes(ecb.update(iv), "big")
        self._context = cipher.encryptor()
        self._last_block: bytes | None = None  # None: the context stands at the IV (nothing encrypted yet)

    def encrypt(self, data: bytes) -> bytes | None:
        """`data` (whole blocks) encrypted from the IV; None when the context's state is not known for sure (an
        earlier call broke off, or the context gave back other than one output block per input block)."""
        last, self._last_block = self._last_block, _UNSURE
        if last is None:
            encrypted = self._context.update(data)
        elif not last:  # _UNSURE
            return None
        else:
            rewind = (self._rewind_key ^ int.from_bytes(last, "big")).to_bytes(_BLOCK, "big")
            encrypted = self._context.update(rewind + data)[_BLOCK:]
        if len(encrypted) != len(data):
            return None
        self._last_block = encrypted[-_BLOCK:]
        return encrypted


class _Decrypting:
    """A kept CBC decryptor and the IV put in front of each message."""

    __slots__ = ("_context", "_iv")

    def __init__(self, cipher: Cipher[Any]) -> None:
        mode: Any = cipher.mode
        self._iv: bytes = mode.initialization_vector
        self._context = cipher.decryptor()

    def decrypt(self, data: bytes) -> bytes | None:
        """`data` (whole blocks) decrypted from the IV (whatever the context's state: the IV is put in front); None
        when the context gave back other than one output block per input block."""
        decrypted = self._context.update(self._iv + data)[_BLOCK:]
        return decrypted if len(decrypted) == len(data) else None


_Transform = Callable[[bytes], bytes | None]
# The kept contexts' `encrypt` / `decrypt`, by cipher; a cipher's entry goes with it (a renewal's old keys).
_encrypting: weakref.WeakKeyDictionary[Cipher[Any], _Transform] = weakref.WeakKeyDictionary()
_decrypting: weakref.WeakKeyDictionary[Cipher[Any], _Transform] = weakref.WeakKeyDictionary()


def _keepable(cipher: Any) -> bool:
    return (
        type(cipher) is Cipher and isinstance(cipher.mode, modes.CBC) and isinstance(cipher.algorithm, algorithms.AES)
    )


def _keep_encrypting(cipher: Cipher[Any]) -> _Transform:
    return _Encrypting(cipher).encrypt


def _keep_decrypting(cipher: Cipher[Any]) -> _Transform:
    return _Decrypting(cipher).decrypt


def _through_kept(
    kept_by_cipher: weakref.WeakKeyDictionary[Cipher[Any], _Transform],
    keep: Callable[[Cipher[Any]], _Transform],
    fresh: Callable[[Any, bytes], bytes],
    cipher: Any,
    data: bytes,
) -> bytes:
    if not data or len(data) % _BLOCK:
        return fresh(cipher, data)  # nothing to keep a context for, or asyncua's error for a partial block
    kept = kept_by_cipher.get(cipher)
    if kept is None:
        if not _keepable(cipher):
            return fresh(cipher, data)
        kept = kept_by_cipher[cipher] = keep(cipher)
    transformed = kept(bytes(data))
    if transformed is None:
        # The kept context cannot be trusted any more: this message and the next go asyncua's way, the next one
        # keeping a new context.
        del kept_by_cipher[cipher]
        return fresh(cipher, data)
    return transformed


def cipher_encrypt(cipher: Any, data: bytes) -> bytes:
    """`uacrypto.cipher_encrypt(cipher, data)`: the same bytes, through the cipher's kept context."""
    return _through_kept(_encrypting, _keep_encrypting, _fresh_encrypt, cipher, data)


def cipher_decrypt(cipher: Any, data: bytes) -> bytes:
    """`uacrypto.cipher_decrypt(cipher, data)`: the same bytes, through the cipher's kept context."""
    return _through_kept(_decrypting, _keep_decrypting, _fresh_decrypt, cipher, data)


def install_fast_block_ciphers() -> bool:
    """Replace asyncua's per-message cipher functions; False (nothing replaced) over another asyncua version."""
    if not asyncua_is_pinned():
        _log.debug(
            "asyncua %s: message encryption left to asyncua (replaced for %s)",
            INSTALLED_ASYNCUA_VERSION,
            PINNED_ASYNCUA_VERSION,
        )
        return False
    uacrypto.cipher_encrypt = cipher_encrypt
    uacrypto.cipher_decrypt = cipher_decrypt
    return True
