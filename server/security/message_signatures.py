"""The symmetric signature of every secured message (Sign and SignAndEncrypt) through the standard library's
one-shot HMAC.

asyncua 2.1.0 signs every message it sends and checks every message it receives with `uacrypto.hmac_sha256`
(`hmac_sha1` under the deprecated Basic128Rsa15 and Basic256 policies), which builds a `cryptography` HMAC object
through `default_backend()` for each message. `hmac.digest` computes the same bytes (RFC 2104) in one OpenSSL call.
Measured in a server under single report calls (bench/report_throughput.py, alternating, SignAndEncrypt): about
4 % of the server's CPU per call less (docs/performance.md).

Installed when the server is built and only over asyncua 2.1.0 (server/asyncua_pin.py), whose two functions these
replace with the same signature and answers; tests/unit/test_message_signatures.py pins both. The replacement is
process-wide: an asyncua client in the same process (the CLI's) signs the same way, with the same bytes.
"""

from __future__ import annotations

import hmac
import logging

from asyncua.crypto import uacrypto

from qualitybridge.server.asyncua_pin import INSTALLED_ASYNCUA_VERSION, PINNED_ASYNCUA_VERSION, asyncua_is_pinned

__all__ = ["hmac_sha1", "hmac_sha256", "install_fast_message_signatures"]

_log = logging.getLogger(__name__)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def hmac_sha1(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha1")


def install_fast_message_signatures() -> bool:
    """Replace asyncua's per-message HMAC functions; False (nothing replaced) over another asyncua version."""
    if not asyncua_is_pinned():
        _log.debug(
            "asyncua %s: message signatures left to asyncua (replaced for %s)",
            INSTALLED_ASYNCUA_VERSION,
            PINNED_ASYNCUA_VERSION,
        )
        return False
    uacrypto.hmac_sha256 = hmac_sha256
    uacrypto.hmac_sha1 = hmac_sha1
    return True
