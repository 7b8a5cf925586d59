"""One call that makes an asyncua Server secure by default for QualityBridge.

Usage::

    server = Server()
    await server.init()
    await apply_security(server, layout=..., application_uri=..., hostnames=[...], accounts=[...])
    await server.start()

It must run after ``init()`` (the application URI is written into the address space) and before
``start()`` (endpoints and security policies are fixed when the server starts listening).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from asyncua import ua
from asyncua.server.server import Server

from qualitybridge.server.access import RolePermissionRuleset
from qualitybridge.server.identity import PasswordUserManager, UserAccount
from qualitybridge.server.pki import PkiLayout, TrustListValidator, ensure_own_certificate

_logger = logging.getLogger(__name__)

SECURE_POLICIES: tuple[ua.SecurityPolicyType, ...] = (
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Basic256Sha256_Sign,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
)


async def apply_security(
    server: Server,
    *,
    layout: PkiLayout,
    application_uri: str,
    hostnames: Sequence[str],
    accounts: Iterable[UserAccount],
    allow_security_none: bool = False,
    allow_anonymous_read: bool = False,
) -> PasswordUserManager:
    """Configure certificates, endpoints, users and permissions; call between ``init()`` and ``start()``.

    Returns the user manager so a configuration reload can ``replace_accounts`` without a restart.
    """
    if server.bserver is not None:
        raise RuntimeError("apply_security must be called before server.start()")
    # Key generation and file access take a moment; keep the event loop free for already running tasks.
    cert_path, key_path = await asyncio.to_thread(ensure_own_certificate, layout, application_uri, hostnames)
    await server.load_certificate(str(cert_path))
    await server.load_private_key(str(key_path))
    await server.set_application_uri(application_uri)

    policies = list(SECURE_POLICIES)
    if allow_security_none:
        _logger.warning("SecurityPolicy None is enabled by configuration: traffic is neither signed nor encrypted")
        policies.insert(0, ua.SecurityPolicyType.NoSecurity)
    ruleset = RolePermissionRuleset(allow_anonymous_read=allow_anonymous_read)
    # asyncua annotates SimpleRoleRuleset, but only ever calls check_validity on it.
    server.set_security_policy(policies, permission_ruleset=ruleset)  # type: ignore[arg-type,unused-ignore]

    user_manager = PasswordUserManager(
        accounts, allow_anonymous=allow_anonymous_read, allow_security_none=allow_security_none
    )
    # The Server constructor already created the InternalServer with a permissive manager; replace it.
    server.iserver.set_user_manager(user_manager)

    tokens: list[type] = [ua.UserNameIdentityToken]
    if allow_anonymous_read:
        _logger.warning("Anonymous read access is enabled by configuration")
        tokens.append(ua.AnonymousIdentityToken)
    server.set_identity_tokens(tokens)

    server.set_certificate_validator(TrustListValidator(layout))
    return user_manager
