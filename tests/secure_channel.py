"""Both ends of a secure channel's symmetric keys without a connection: policies keyed from the same nonces as
OpenSecureChannel keys them, for tests and benchmarks of what is sent and read under those keys."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from asyncua import ua
from asyncua.crypto import security_policies

SECURE_POLICIES = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128Sha256RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256Sha256RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}
TOKEN_LIFETIME_MS = 3_600_000

CertificateAndKey = tuple[Any, Any]  # (x509.Certificate, rsa.RSAPrivateKey)


def keyed_policies(
    policy: str, mode: str, client: CertificateAndKey, server: CertificateAndKey, receivers: int
) -> list[Any]:
    """The sending end's policy (the client's) and `receivers` receiving ends' (the server's), keyed for one channel;
    policy "None": SecurityPolicyNone throughout."""
    if policy == "None":
        policies: list[Any] = [security_policies.SecurityPolicyNone() for _ in range(1 + receivers)]
    else:
        (client_cert, client_key), (server_cert, server_key) = client, server
        policy_class = SECURE_POLICIES[policy]
        policies = [policy_class(server_cert, client_cert, client_key, MODES[mode])] + [
            policy_class(client_cert, server_cert, server_key, MODES[mode]) for _ in range(receivers)
        ]
    derive_keys(policies[0], policies[1:])
    return policies


def derive_keys(sender_policy: Any, receiver_policies: Sequence[Any]) -> None:
    """Symmetric keys from fresh nonces on the sender and every receiver, as an OpenSecureChannel (or its renewal,
    which keeps the previous keys a while) derives them."""
    client_nonce, server_nonce = os.urandom(32), os.urandom(32)
    sender_policy.make_local_symmetric_key(server_nonce, client_nonce)
    sender_policy.make_remote_symmetric_key(client_nonce, server_nonce, TOKEN_LIFETIME_MS)
    for receiver_policy in receiver_policies:
        receiver_policy.make_local_symmetric_key(client_nonce, server_nonce)
        receiver_policy.make_remote_symmetric_key(server_nonce, client_nonce, TOKEN_LIFETIME_MS)
