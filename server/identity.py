"""Who is connected: QualityBridge accounts, their roles, and the asyncua user manager that logs them in.

Passwords are stored as scrypt hashes only. Sessions on an unencrypted (SecurityPolicy None) channel and
anonymous sessions are refused unless the configuration explicitly allows them, because asyncua lets a
client activate a session on a None channel even when no None endpoint is offered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager

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


_ASYNCUA_ROLE = {
    Role.OBSERVER: UserRole.User,
    Role.MACHINE: UserRole.User,
    Role.OPERATOR: UserRole.User,
    Role.QUALITY_ENGINEER: UserRole.User,
    Role.ADMIN: UserRole.Admin,
}


@dataclass
class QualityBridgeUser(User):
    """Session user as asyncua stores it, carrying the QualityBridge role (None means anonymous)."""

    account_role: Role | None = None
    work_centres: tuple[str, ...] = ()

    @classmethod
    def for_account(cls, account: UserAccount) -> QualityBridgeUser:
        return cls(
            role=_ASYNCUA_ROLE[account.role],
            name=account.name,
            account_role=account.role,
            work_centres=account.work_centres,
        )

    @classmethod
    def anonymous(cls) -> QualityBridgeUser:
        return cls(role=UserRole.Anonymous, name=None, account_role=None)


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
    ) -> None:
        self.allow_anonymous = allow_anonymous
        self.allow_security_none = allow_security_none
        self._lock = threading.Lock()
        # Keyed HMAC rather than a bare SHA-256 so a memory dump does not give fast-to-crack password digests.
        self._cache_key = secrets.token_bytes(32)
        self._accounts: dict[str, UserAccount] = {}
        self._verified: set[tuple[str, str, bytes]] = set()
        self.replace_accounts(accounts)

    def replace_accounts(self, accounts: Iterable[UserAccount]) -> None:
        """Swap the account list (e.g. after a config reload); forgets all cached logins."""
        by_name = {account.name: account for account in accounts}
        with self._lock:
            self._accounts = by_name
            self._verified = set()

    def _password_fingerprint(self, password: str) -> bytes:
        return hmac.new(self._cache_key, password.encode("utf-8"), hashlib.sha256).digest()

    def _check_password(self, account: UserAccount, username: str, password: str) -> bool:
        cache_key = (username, account.password_hash, self._password_fingerprint(password))
        with self._lock:
            if cache_key in self._verified:
                return True
        # scrypt runs once per account/password; later logins hit the cache and do not stall the event loop.
        if not verify_password(password, account.password_hash):
            return False
        with self._lock:
            self._verified.add(cache_key)
        return True

    def get_user(
        self,
        iserver: InternalServer,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if not certificate and not self.allow_security_none:
            _logger.warning("Refused session for user %r: channel has SecurityPolicy None", username)
            return None
        if username is None:
            # X509 identity tokens are not offered, so a token without user name is the anonymous token.
            if self.allow_anonymous:
                return QualityBridgeUser.anonymous()
            _logger.warning("Refused anonymous session: anonymous access is disabled")
            return None
        with self._lock:
            account = self._accounts.get(username)
        if account is None:
            verify_password(password or "", _DUMMY_HASH)
        if account is None or not self._check_password(account, username, password or ""):
            _logger.warning("Refused session for user %r: unknown user or wrong password", username)
            return None
        return QualityBridgeUser.for_account(account)
