"""The standard library's HMAC in place of asyncua 2.1.0's per-message `cryptography` HMAC: the same bytes, installed
only over the asyncua version whose functions it replaces."""

from __future__ import annotations

import importlib.metadata
import inspect
import os

import pytest
from asyncua.crypto import security_policies, uacrypto
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from qualitybridge.server.asyncua_pin import PINNED_ASYNCUA_VERSION
from qualitybridge.server.security import message_signatures
from qualitybridge.server.security.message_signatures import hmac_sha1, hmac_sha256, install_fast_message_signatures


def _reference(algorithm: hashes.HashAlgorithm, key: bytes, message: bytes) -> bytes:
    """What asyncua 2.1.0's uacrypto.hmac_sha256 / hmac_sha1 answer: a `cryptography` HMAC."""
    mac = crypto_hmac.HMAC(key, algorithm)
    mac.update(message)
    return mac.finalize()


@pytest.mark.parametrize("message_size", [0, 1, 63, 64, 65, 1000, 8192, 65535])
@pytest.mark.parametrize("key_size", [16, 24, 32, 100])
def test_the_same_signature_bytes_as_asyncua_computes(key_size: int, message_size: int) -> None:
    key, message = os.urandom(key_size), os.urandom(message_size)
    assert hmac_sha256(key, message) == _reference(hashes.SHA256(), key, message)
    # Basic128Rsa15 and Basic256 sign with HMAC-SHA1 (OPC UA Part 7); asyncua still offers them.
    assert hmac_sha1(key, message) == _reference(hashes.SHA1(), key, message)  # noqa: S303


def test_installed_over_the_asyncua_it_was_written_for_and_signers_use_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert importlib.metadata.version("asyncua") == PINNED_ASYNCUA_VERSION, "check the replaced functions again"
    # asyncua's own functions, as this module replaces them: same parameters, looked up at each call.
    for name in ("hmac_sha256", "hmac_sha1"):
        monkeypatch.setattr(uacrypto, name, getattr(uacrypto, name))
        assert list(inspect.signature(getattr(uacrypto, name)).parameters) == ["key", "message"]
    assert "uacrypto.hmac_sha256(self.key, data)" in inspect.getsource(security_policies.SignerHMac256.signature)
    assert "uacrypto.hmac_sha256(self.key, data)" in inspect.getsource(security_policies.VerifierHMac256.verify)
    assert install_fast_message_signatures()
    assert uacrypto.hmac_sha256 is hmac_sha256
    assert uacrypto.hmac_sha1 is hmac_sha1
    key, data = os.urandom(32), os.urandom(500)
    signature = security_policies.SignerHMac256(key).signature(data)
    assert signature == _reference(hashes.SHA256(), key, data)
    security_policies.VerifierHMac256(key).verify(data, signature)
    with pytest.raises(uacrypto.InvalidSignature):
        security_policies.VerifierHMac256(key).verify(data + b"x", signature)


def test_another_asyncua_keeps_its_own_signatures(monkeypatch: pytest.MonkeyPatch) -> None:
    original = uacrypto.hmac_sha256
    monkeypatch.setattr(uacrypto, "hmac_sha256", original)
    monkeypatch.setattr(message_signatures, "asyncua_is_pinned", lambda: False)  # as over another asyncua
    assert not install_fast_message_signatures()
    assert uacrypto.hmac_sha256 is original
