"""The asyncua version whose internals QualityBridge repeats or replaces at run time: one place to change when
asyncua is upgraded, after checking those modules against the new version.

- address_space/value_writes.py repeats `write_attribute_value` for several values at once;
- security/message_signatures.py replaces the per-message HMAC functions of `uacrypto`;
- security/block_ciphers.py replaces its per-message AES-CBC functions (`cipher_encrypt`, `cipher_decrypt`);
- security/symmetric_chunks.py reads and writes the symmetric chunks of the server's secure connections (put in
  place by limits/transport.py).

Over any other asyncua all four leave asyncua's own code in place. The other places that subclass, repeat or
replace part of asyncua are pinned by their tests (source digests, or comparisons with asyncua's behaviour): all of
them are listed in docs/asyncua-overrides.md, the checklist for an upgrade.
"""

from __future__ import annotations

import importlib.metadata

__all__ = ["INSTALLED_ASYNCUA_VERSION", "PINNED_ASYNCUA_VERSION", "asyncua_is_pinned"]

PINNED_ASYNCUA_VERSION = "2.1.0"
INSTALLED_ASYNCUA_VERSION = importlib.metadata.version("asyncua")


def asyncua_is_pinned() -> bool:
    """Whether the installed asyncua is the one whose internals are repeated or replaced here."""
    return INSTALLED_ASYNCUA_VERSION == PINNED_ASYNCUA_VERSION
