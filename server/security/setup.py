"""One call that makes an asyncua Server secure by default for QualityBridge.

Usage::

    server = Server()
    await server.init()
    security = await apply_security(server, layout=..., application_uri=..., hostnames=[...], accounts=[...])
    await server.start()
    await security.started()

It must run after ``init()`` (the application URI is written into the address space) and before
``start()`` (endpoints and security policies are fixed when the server starts listening).
`ServerSecurity` is what stays adjustable while the server runs: accounts (`apply_accounts`), the trust
list (`revalidate_sessions`) and the own certificate (`own_certificate.check`).

asyncua internals: Server.bserver (None until started), Server.iserver.set_user_manager
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.server.server import Server

from qualitybridge.domain.audit import AuditEntry
from qualitybridge.server.pki import RENEW_BEFORE, PkiLayout, TrustListValidator, ensure_own_certificate
from qualitybridge.server.pki.own_certificate import OwnCertificateKeeper
from qualitybridge.server.security.access import RolePermissionRuleset
from qualitybridge.server.security.audit_events import OpcUaAuditEvents
from qualitybridge.server.security.identity import PasswordUserManager, Role, UserAccount
from qualitybridge.server.security.role_set import publish_role_mapping
from qualitybridge.server.security.session_hooks import AuditSink, OpenSession, SessionHooks

_logger = logging.getLogger(__name__)

SECURE_POLICIES: tuple[ua.SecurityPolicyType, ...] = (
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Basic256Sha256_Sign,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
)


class _FanOut:
    """Hands each audit entry to the store's writer and to the AuditEvent emitter."""

    def __init__(self, sink: AuditSink | None) -> None:
        self.sink = sink
        self.events: OpcUaAuditEvents | None = None

    def record(self, entry: AuditEntry) -> None:
        if self.sink is not None:
            self.sink.record(entry)
        if self.events is not None:
            self.events(entry)


@dataclass(frozen=True)
class SecurityOptions:
    """What a deployment tunes beyond the endpoint settings ([security] and [audit] of the configuration)."""

    audit: AuditSink | None = None
    audit_events: bool = True
    renew_before: datetime.timedelta = RENEW_BEFORE
    certificate_valid_days: int = 730


@dataclass
class ServerSecurity:
    users: PasswordUserManager
    validator: TrustListValidator
    hooks: SessionHooks
    ruleset: RolePermissionRuleset
    own_certificate: OwnCertificateKeeper
    audit_events: OpcUaAuditEvents | None
    _trust_revision: int = -1

    async def started(self) -> None:
        """Call after ``server.start()``: remembers the served certificate, starts AuditEvents."""
        self.own_certificate.note_loaded()
        self._trust_revision = self.validator.revision()
        if self.audit_events is not None:
            self.audit_events.start()

    async def stopping(self) -> None:
        if self.audit_events is not None:
            await self.audit_events.stop()

    async def apply_accounts(self, accounts: Iterable[UserAccount]) -> list[str]:
        """Take new account data into effect; sessions of removed or changed accounts end. Returns changed names."""
        new = {account.name: account for account in accounts}
        old = self.users.accounts
        changed = sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))
        if not changed:
            return []
        self.users.replace_accounts(new.values())
        gone = {name for name in changed if name in old}
        if gone:
            await self.hooks.revoke_where(
                lambda info: info.user is not None and info.user.name in gone, "account removed or changed"
            )
        _logger.info("accounts changed: %s", ", ".join(changed))
        return changed

    async def revalidate_sessions(self) -> int:
        """After a trust list change, end sessions whose client certificate is no longer accepted."""
        revision = await asyncio.to_thread(self.validator.revision)
        if revision == self._trust_revision:
            return 0
        self._trust_revision = revision

        def refused(info: OpenSession) -> bool:
            if info.client_certificate is None or info.client_description is None:
                return False
            try:
                self.validator.validate(info.client_certificate, info.client_description)
            except ServiceError:
                return True
            return False

        return await self.hooks.revoke_where(refused, "client certificate no longer trusted")


async def apply_security(
    server: Server,
    *,
    layout: PkiLayout,
    application_uri: str,
    hostnames: Sequence[str],
    accounts: Iterable[UserAccount],
    allow_security_none: bool = False,
    allow_anonymous_read: bool = False,
    options: SecurityOptions | None = None,
) -> ServerSecurity:
    """Configure certificates, endpoints, users, permissions and auditing; call between ``init()`` and ``start()``."""
    options = options or SecurityOptions()
    if server.bserver is not None:
        raise RuntimeError("apply_security must be called before server.start()")
    # Key generation and file access take a moment; keep the event loop free for already running tasks.
    cert_path, key_path = await asyncio.to_thread(
        ensure_own_certificate,
        layout,
        application_uri,
        hostnames,
        valid_days=options.certificate_valid_days,
        renew_before=options.renew_before,
    )
    await server.load_certificate(str(cert_path))
    await server.load_private_key(str(key_path))
    await server.set_application_uri(application_uri)

    fan_out = _FanOut(options.audit)
    hooks = SessionHooks(fan_out)
    hooks.install(server)

    policies = list(SECURE_POLICIES)
    if allow_security_none:
        _logger.warning("SecurityPolicy None is enabled by configuration: traffic is neither signed nor encrypted")
        policies.insert(0, ua.SecurityPolicyType.NoSecurity)
    ruleset = RolePermissionRuleset(allow_anonymous_read=allow_anonymous_read, on_refused=hooks.audit_refused_request)
    # asyncua annotates SimpleRoleRuleset, but only ever calls check_validity on it.
    server.set_security_policy(policies, permission_ruleset=ruleset)  # type: ignore[arg-type,unused-ignore]

    validator = TrustListValidator(layout)
    user_manager = PasswordUserManager(
        accounts,
        allow_anonymous=allow_anonymous_read,
        allow_security_none=allow_security_none,
        is_revoked=validator.is_revoked,
    )
    # The Server constructor already created the InternalServer with a permissive manager; replace it.
    server.iserver.set_user_manager(user_manager)

    tokens: list[type] = [ua.UserNameIdentityToken, ua.X509IdentityToken]
    if allow_anonymous_read:
        _logger.warning("Anonymous read access is enabled by configuration")
        tokens.append(ua.AnonymousIdentityToken)
    server.set_identity_tokens(tokens)
    server.set_certificate_validator(validator)
    await publish_role_mapping(server, allow_anonymous=allow_anonymous_read)

    def role_of(name: str) -> Role | None:
        account = user_manager.accounts.get(name)
        return account.role if account else None

    events: OpcUaAuditEvents | None = None
    if options.audit_events:
        events = OpcUaAuditEvents(server, hooks, role_of=role_of)
        await events.init()
        fan_out.events = events

    keeper = OwnCertificateKeeper(
        server,
        layout,
        application_uri,
        hostnames,
        renew_before=options.renew_before,
        valid_days=options.certificate_valid_days,
        on_change=lambda action, description: hooks.record_admin(action, arguments=description),
    )
    return ServerSecurity(
        users=user_manager,
        validator=validator,
        hooks=hooks,
        ruleset=ruleset,
        own_certificate=keeper,
        audit_events=events,
    )
