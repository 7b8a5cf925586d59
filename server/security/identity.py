"""Who is connected: QualityBridge accounts, their roles, and the asyncua user manager that logs them in.

Passwords are stored as scrypt hashes only. Sessions on an unencrypted (SecurityPolicy None) channel and
anonymous sessions are refused unless the configuration explicitly allows them, because asyncua lets a
client activate a session on a None channel even when no None endpoint is offered.

An account may also have a certificate bound (by thumbprint): an X.509 user token signed with that
certificate's key logs in as the account. asyncua hands the user manager only (user name, password,
certificate), which cannot tell an anonymous token from an X.509 one, so `session_hooks` publishes the
kind of token and the secure channel's certificate in `activation_context` while the session activates.

asyncua internals: UserManager.get_user(iserver, ...) from asyncua.server.user_managers
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography import x509

from qualitybridge.server.pki import certificate_from_token, thumbprint

if TYPE_CHECKING:
    from asyncua.server.internal_server import InternalServer

_logger = logging.getLogger(__name__)

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_SALT_BYTES = 16
SCRYPT_KEY_BYTES = 32
# Headroom above 128*n*r (16 MiB) so OpenSSL does not refuse the default parameters.
_SCRYPT_MAXMEM = 64 * 1024 * 1024
# Stored instead of a hash for accounts that log in with a certificate only; no password ever matches it.
NO_PASSWORD = "!"  # noqa: S105 - a marker, not a password
_REFUSED_KEPT = 1024


class Role(StrEnum):
    OBSERVER = "Observer"
    MACHINE = "Machine"
    OPERATOR = "Operator"
    QUALITY_ENGINEER = "QualityEngineer"
    ADMIN = "Admin"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """Return ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` for storing in the account configuration."""
    salt = secrets.token_bytes(SCRYPT_SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=_SCRYPT_MAXMEM,
        dklen=SCRYPT_KEY_BYTES,
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Check a password against a stored hash; a malformed hash never verifies."""
    try:
        scheme, n_text, r_text, p_text, salt_b64, hash_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        n, r, p = int(n_text), int(r_text), int(p_text)
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=n,
            r=r,
            p=p,
            maxmem=max(_SCRYPT_MAXMEM, 256 * n * r),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class UserAccount:
    name: str
    role: Role
    password_hash: str
    work_centres: tuple[str, ...] = ()
    certificate_thumbprint: str | None = None


class TokenKind(StrEnum):
    ANONYMOUS = "anonymous"
    USER_NAME = "username"
    X509 = "x509"


@dataclass(frozen=True)
class ActivationContext:
    """What the user manager needs to know about an ActivateSession beyond what asyncua passes it."""

    token_kind: TokenKind
    channel_certificate: bytes | None  # DER of the secure channel's client certificate; empty on a None channel
    client_thumbprint: str | None = None
    remote_address: str | None = None


activation_context: ContextVar[ActivationContext | None] = ContextVar("qualitybridge_activation", default=None)


@contextmanager
def activating(context: ActivationContext) -> Iterator[None]:
    token = activation_context.set(context)
    try:
        yield
    finally:
        activation_context.reset(token)


@dataclass
class QualityBridgeUser(User):
    """Session user as asyncua stores it, carrying the QualityBridge role (None means anonymous).

    Every QualityBridge role maps to asyncua's plain `UserRole.User`: asyncua lets its Admin role write any
    attribute of any node (access levels unchecked), which would let an account overwrite ERP master data
    in the address space. Which service a role may use is decided by `access.RolePermissionRuleset`.
    A user is created per session activation, so it also carries where that session comes from.
    """

    account_role: Role | None = None
    work_centres: tuple[str, ...] = ()
    client_thumbprint: str | None = None
    remote_address: str | None = None
    # Set when the account was removed or changed while the session was open; the ruleset then refuses all.
    revoked: bool = False

    @classmethod
    def for_account(cls, account: UserAccount, context: ActivationContext | None = None) -> QualityBridgeUser:
        return cls(
            role=UserRole.User,
            name=account.name,
            account_role=account.role,
            work_centres=account.work_centres,
            client_thumbprint=context.client_thumbprint if context else None,
            remote_address=context.remote_address if context else None,
        )

    @classmethod
    def anonymous(cls, context: ActivationContext | None = None) -> QualityBridgeUser:
        return cls(
            role=UserRole.Anonymous,
            name=None,
            account_role=None,
            client_thumbprint=context.client_thumbprint if context else None,
            remote_address=context.remote_address if context else None,
        )


# Verifying against this keeps the time for an unknown user equal to that for a wrong password.
_DUMMY_HASH = hash_password(secrets.token_hex(16))


class PasswordUserManager(UserManager):
    """asyncua user manager checking user name and password against scrypt hashes."""

    def __init__(
        self,
        accounts: Iterable[UserAccount],
        *,
        allow_anonymous: bool = False,
        allow_security_none: bool = False,
        is_revoked: Callable[[x509.Certificate], bool] | None = None,
    ) -> None:
        self.allow_anonymous = allow_anonymous
        self.allow_security_none = allow_security_none
        self._is_revoked = is_revoked
        self._lock = threading.Lock()
        # Keyed HMAC rather than a bare SHA-256 so a memory dump does not give fast-to-crack password digests.
        self._cache_key = secrets.token_bytes(32)
        self._accounts: dict[str, UserAccount] = {}
        self._by_thumbprint: dict[str, UserAccount] = {}
        self._verified: set[tuple[str, str, bytes]] = set()
        # Wrong passwords found by verify_ahead, each answered once by get_user without a second scrypt run.
        self._refused: dict[tuple[str, str, bytes], None] = {}
        self.replace_accounts(accounts)

    def replace_accounts(self, accounts: Iterable[UserAccount]) -> None:
        """Swap the account list (e.g. after a reload from the store); forgets all cached logins."""
        by_name = {account.name: account for account in accounts}
        by_thumbprint = {
            account.certificate_thumbprint.lower(): account
            for account in by_name.values()
            if account.certificate_thumbprint
        }
        with self._lock:
            self._accounts = by_name
            self._by_thumbprint = by_thumbprint
            self._verified = set()
            self._refused = {}

    @property
    def accounts(self) -> dict[str, UserAccount]:
        with self._lock:
            return dict(self._accounts)

    def _password_fingerprint(self, password: str) -> bytes:
        return hmac.new(self._cache_key, password.encode("utf-8"), hashlib.sha256).digest()

    def _check_password(self, account: UserAccount, username: str, password: str) -> bool:
        if account.password_hash == NO_PASSWORD:
            # Same time as a wrong password, so a probe cannot tell certificate-only accounts apart.
            verify_password(password, _DUMMY_HASH)
            return False
        cache_key = (username, account.password_hash, self._password_fingerprint(password))
        with self._lock:
            if cache_key in self._verified:
                return True
            if cache_key in self._refused:  # found wrong by verify_ahead just now
                del self._refused[cache_key]
                return False
        # scrypt runs once per account/password (in a worker thread when verify_ahead ran first); later logins hit
        # the cache and do not stall the event loop.
        if not verify_password(password, account.password_hash):
            return False
        with self._lock:
            self._verified.add(cache_key)
        return True

    def verify_ahead(self, username: str | None, password: str | None) -> None:
        """Run the scrypt check of a login before asyncua asks `get_user` on the event loop (called in a worker
        thread by the transport); the verdict is kept for that `get_user`."""
        with self._lock:
            account = self._accounts.get(username or "")
        if account is None or account.password_hash == NO_PASSWORD:
            return  # answered by get_user as before (the same time as a wrong password)
        cache_key = (username or "", account.password_hash, self._password_fingerprint(password or ""))
        with self._lock:
            if cache_key in self._verified:
                return
        if verify_password(password or "", account.password_hash):
            with self._lock:
                self._verified.add(cache_key)
            return
        with self._lock:
            self._refused[cache_key] = None
            while len(self._refused) > _REFUSED_KEPT:  # a verdict get_user never asked for (connection gone)
                del self._refused[next(iter(self._refused))]

    def get_user(
        self,
        iserver: InternalServer,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        context = activation_context.get()
        # Without the hook's context (direct use, tests), fall back to what asyncua passes: for user name and
        # anonymous tokens `certificate` is the channel's certificate.
        channel_secured = bool(context.channel_certificate) if context is not None else bool(certificate)
        if context is not None:
            kind = context.token_kind
        else:
            kind = TokenKind.USER_NAME if username is not None else TokenKind.ANONYMOUS
        if not channel_secured and not self.allow_security_none:
            _logger.warning("Refused session for user %r: channel has SecurityPolicy None", username)
            return None
        if kind is TokenKind.X509:
            return self._certificate_user(certificate, context)
        if kind is TokenKind.ANONYMOUS:
            if self.allow_anonymous:
                return QualityBridgeUser.anonymous(context)
            _logger.warning("Refused anonymous session: anonymous access is disabled")
            return None
        if not username:
            _logger.warning("Refused session: user name token without a user name")
            return None
        with self._lock:
            account = self._accounts.get(username)
        if account is None:
            verify_password(password or "", _DUMMY_HASH)
        if account is None or not self._check_password(account, username, password or ""):
            _logger.warning(
                "Refused session for user %r from %s: unknown user or wrong password",
                username,
                context.remote_address if context is not None else "?",
                extra={
                    "user": username,
                    "status": "BadUserAccessDenied",
                    "client_address": context.remote_address if context is not None else None,
                },
            )
            return None
        return QualityBridgeUser.for_account(account, context)

    def _certificate_user(self, token_certificate: Any, context: ActivationContext | None) -> User | None:
        """The account bound to the X.509 user token's certificate (asyncua has checked the token's signature)."""
        try:
            certificate = certificate_from_token(bytes(token_certificate or b""))
        except ValueError:
            _logger.warning("Refused X.509 user token: certificate unreadable")
            return None
        fingerprint = thumbprint(certificate)
        with self._lock:
            account = self._by_thumbprint.get(fingerprint)
        if account is None:
            _logger.warning("Refused X.509 user token %s: no user has this certificate bound", fingerprint)
            return None
        now = datetime.datetime.now(datetime.UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            _logger.warning("Refused X.509 user token %s of %s: certificate expired", fingerprint, account.name)
            return None
        if self._is_revoked is not None and self._is_revoked(certificate):
            _logger.warning("Refused X.509 user token %s of %s: certificate revoked", fingerprint, account.name)
            return None
        return QualityBridgeUser.for_account(account, context)
