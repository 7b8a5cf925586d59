"""AES-CBC through one kept context per cipher in place of asyncua 2.1.0's context per message: the same bytes,
message after message, installed only over the asyncua version whose functions it replaces."""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import random
from typing import Any

import pytest
from asyncua.crypto import security_policies, uacrypto
from cryptography.hazmat.decrepit.ciphers.algorithms import Camellia
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from qualitybridge.server.asyncua_pin import PINNED_ASYNCUA_VERSION
from qualitybridge.server.security import block_ciphers
from qualitybridge.server.security.block_ciphers import cipher_decrypt, cipher_encrypt, install_fast_block_ciphers


def _fresh(cipher: Cipher[modes.CBC], data: bytes, *, decrypt: bool = False) -> bytes:
    """What asyncua 2.1.0's uacrypto.cipher_encrypt / cipher_decrypt answer: a context made for the message."""
    context = cipher.decryptor() if decrypt else cipher.encryptor()
    return context.update(data) + context.finalize()


def _cbc(key_size: int) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(os.urandom(key_size)), modes.CBC(os.urandom(16)))


@pytest.mark.parametrize("key_size", [16, 32])  # Aes128Sha256RsaOaep; Basic256Sha256 and Aes256Sha256RsaPss
def test_every_message_of_a_channel_gets_the_bytes_a_fresh_context_gives(key_size: int) -> None:
    rng = random.Random(key_size)
    sending, receiving = _cbc(key_size), _cbc(key_size)
    for _ in range(300):
        # Lengths as chunks have them (whole blocks of the key's size), and single blocks; the two directions of a
        # channel interleaved, as requests and responses cross.
        plain = os.urandom(16 * rng.choice([1, 2, 3, 4, 13, 64, 511, 512]))
        assert cipher_encrypt(sending, plain) == _fresh(sending, plain)
        ciphertext = _fresh(receiving, plain)
        assert cipher_decrypt(receiving, ciphertext) == plain
        # The message a fresh context decrypts is the one the kept encryptor wrote, and the other way round.
        assert _fresh(sending, cipher_encrypt(sending, plain), decrypt=True) == plain
        assert cipher_decrypt(receiving, cipher_encrypt(receiving, plain)) == plain


def test_equal_messages_encrypt_alike_each_time() -> None:
    # CBC from the same IV: the same plaintext gives the same ciphertext, message after message, and the kept
    # context's position (after the previous message) must not leak into the next one.
    cipher = _cbc(32)
    plain = os.urandom(64)
    first = cipher_encrypt(cipher, plain)
    assert [cipher_encrypt(cipher, plain) for _ in range(5)] == [first] * 5 == [_fresh(cipher, plain)] * 5


def test_what_a_kept_context_does_not_take_goes_asyncuas_way() -> None:
    cipher = _cbc(32)
    assert cipher_encrypt(cipher, b"") == b"" == cipher_decrypt(cipher, b"")
    # Empty once the cipher has a kept context: nothing encrypted, and the next message still from the IV.
    one_block = os.urandom(16)
    assert cipher_encrypt(cipher, one_block) == _fresh(cipher, one_block)
    assert cipher_decrypt(cipher, _fresh(cipher, one_block)) == one_block
    assert cipher_encrypt(cipher, b"") == b"" == cipher_decrypt(cipher, b"")
    assert cipher_encrypt(cipher, one_block) == _fresh(cipher, one_block)
    assert cipher_decrypt(cipher, _fresh(cipher, one_block)) == one_block
    # Not a whole number of blocks: asyncua's context raises in finalize, and so does this, before and after the
    # cipher got a kept context; the kept one holds no partial block afterwards.
    with pytest.raises(ValueError, match="multiple of the block length"):
        cipher_encrypt(cipher, os.urandom(20))
    plain = os.urandom(48)
    assert cipher_encrypt(cipher, plain) == _fresh(cipher, plain)
    with pytest.raises(ValueError, match="multiple of the block length"):
        cipher_encrypt(cipher, os.urandom(47))
    with pytest.raises(ValueError, match="multiple of the block length"):
        cipher_decrypt(cipher, os.urandom(47))
    assert cipher_encrypt(cipher, plain) == _fresh(cipher, plain)
    assert cipher_decrypt(cipher, _fresh(cipher, plain)) == plain
    # Another mode, or another cipher in CBC, is not kept: the same answer as asyncua's function, a new context
    # each time (the rewinds are worked out for AES's 16-byte blocks and key).
    ctr = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16)))
    camellia = Cipher(Camellia(os.urandom(32)), modes.CBC(os.urandom(16)))
    for other in (ctr, camellia):
        for _ in range(2):
            assert cipher_encrypt(other, plain) == _fresh(other, plain)  # type: ignore[arg-type]
            assert cipher_decrypt(other, _fresh(other, plain)) == plain  # type: ignore[arg-type]
        assert other not in block_ciphers._encrypting
        assert other not in block_ciphers._decrypting


class _ShortContext:
    """A context that gives back one block less than it was given (never seen; the kept contexts must not trust it)."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def update(self, data: bytes) -> bytes:
        return bytes(self._context.update(data))[16:]


def test_a_kept_context_whose_state_is_not_known_is_dropped_and_the_message_goes_asyncuas_way() -> None:
    cipher = _cbc(32)
    plain = os.urandom(64)
    assert cipher_encrypt(cipher, plain) == _fresh(cipher, plain)
    assert cipher_decrypt(cipher, _fresh(cipher, plain)) == plain
    encrypting = block_ciphers._encrypting[cipher].__self__  # type: ignore[attr-defined]
    decrypting = block_ciphers._decrypting[cipher].__self__  # type: ignore[attr-defined]
    # An encryption broken off half-way (its state was marked unsure before the context ran) ...
    encrypting._last_block = block_ciphers._UNSURE
    assert cipher_encrypt(cipher, plain) == _fresh(cipher, plain)
    assert cipher not in block_ciphers._encrypting
    assert cipher_encrypt(cipher, plain) == _fresh(cipher, plain)  # a new context, from the IV
    assert block_ciphers._encrypting[cipher].__self__ is not encrypting  # type: ignore[attr-defined]
    # ... and contexts giving back other than a block per block.
    block_ciphers._encrypting[cipher].__self__._context = _ShortContext(cipher.encryptor())  # type: ignore[attr-defined]
    decrypting._context = _ShortContext(cipher.decryptor())
    assert cipher_encrypt(cipher, plain) == _fresh(cipher, plain)
    assert cipher_decrypt(cipher, _fresh(cipher, plain)) == plain
    assert cipher not in block_ciphers._encrypting
    assert cipher not in block_ciphers._decrypting
    # The next messages keep new contexts, from the IV.
    for _ in range(3):
        assert cipher_encrypt(cipher, plain) == _fresh(cipher, plain)
        assert cipher_decrypt(cipher, _fresh(cipher, plain)) == plain
    assert cipher in block_ciphers._encrypting
    assert cipher in block_ciphers._decrypting


def test_a_renewed_token_s_cipher_gets_its_own_context_and_the_old_one_goes_with_its_cipher() -> None:
    old, new = _cbc(32), _cbc(32)
    plain = os.urandom(32)
    assert cipher_encrypt(old, plain) == _fresh(old, plain)
    assert cipher_encrypt(new, plain) == _fresh(new, plain) != _fresh(old, plain)
    assert old in block_ciphers._encrypting
    del old
    assert len([cipher for cipher in block_ciphers._encrypting if cipher is not new]) == 0


def test_installed_over_the_asyncua_it_was_written_for_and_its_ciphers_use_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert importlib.metadata.version("asyncua") == PINNED_ASYNCUA_VERSION, "check the replaced functions again"
    for name in ("cipher_encrypt", "cipher_decrypt"):
        monkeypatch.setattr(uacrypto, name, getattr(uacrypto, name))
        assert list(inspect.signature(getattr(uacrypto, name)).parameters) == ["cipher", "data"]
    assert "uacrypto.cipher_encrypt(self.cipher, data)" in inspect.getsource(security_policies.EncryptorAesCbc)
    assert "uacrypto.cipher_decrypt(self.cipher, data)" in inspect.getsource(security_policies.DecryptorAesCbc)
    # asyncua's own functions as this module kept them (whatever `uacrypto` holds now: a server built in this
    # process installed the replacement already): a context made for each message.
    assert "encryptor.update(data) + encryptor.finalize()" in inspect.getsource(block_ciphers._fresh_encrypt)
    assert "decryptor.update(data) + decryptor.finalize()" in inspect.getsource(block_ciphers._fresh_decrypt)
    assert block_ciphers._fresh_encrypt.__module__ == block_ciphers._fresh_decrypt.__module__ == uacrypto.__name__
    assert install_fast_block_ciphers()
    assert uacrypto.cipher_encrypt is cipher_encrypt
    assert uacrypto.cipher_decrypt is cipher_decrypt
    key, iv, plain = os.urandom(32), os.urandom(16), os.urandom(160)
    encryptor = security_policies.EncryptorAesCbc(key, iv)
    ciphertext = encryptor.encrypt(plain)
    assert ciphertext == _fresh(Cipher(algorithms.AES(key), modes.CBC(iv)), plain)
    assert encryptor.cipher in block_ciphers._encrypting
    assert security_policies.DecryptorAesCbc(key, iv).decrypt(ciphertext) == plain


def test_another_asyncua_keeps_its_own_ciphers(monkeypatch: pytest.MonkeyPatch) -> None:
    original = uacrypto.cipher_encrypt, uacrypto.cipher_decrypt
    monkeypatch.setattr(uacrypto, "cipher_encrypt", original[0])
    monkeypatch.setattr(uacrypto, "cipher_decrypt", original[1])
    monkeypatch.setattr(block_ciphers, "asyncua_is_pinned", lambda: False)  # as over another asyncua
    assert not install_fast_block_ciphers()
    assert (uacrypto.cipher_encrypt, uacrypto.cipher_decrypt) == original
