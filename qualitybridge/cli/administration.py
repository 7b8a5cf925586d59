"""The admin commands behind `qualitybridge pki …`, `qualitybridge users …` and `qualitybridge audit-log`.

Each command changes only the store or the PKI folders; the running server picks the change up by itself
(`server.security.jobs`). Every change, and every refused attempt, is written to the audit log with the operating
system account that ran the command. Commands return their output as an `AdminOutput` so that the CLI stays
a parser and tests can run the commands in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asyncua import ua

from qualitybridge.cli.common import config_for_admin, setup_logging
from qualitybridge.config import QualityBridgeConfig
from qualitybridge.domain.audit import AuditEntry, AuditKind
from qualitybridge.server.pki import (
    PkiLayout,
    describe_own_certificate,
    install_own_certificate,
    list_certificates,
    load_certificate_bytes,
    own_certificate_warnings,
    reject_certificate,
    remove_certificate,
    thumbprint,
    trust_certificate,
)
from qualitybridge.server.security.identity import NO_PASSWORD, Role, hash_password
from qualitybridge.store import Store, StoredUser, open_store
from qualitybridge.store.audit_log import AuditLogStore

__all__ = ["MIN_PASSWORD_LENGTH", "AdminOutput", "Administration", "parse_since", "run_admin"]

MIN_PASSWORD_LENGTH = 8


@dataclass
class AdminOutput:
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exit_code: int = 0

    def say(self, line: str) -> None:
        self.lines.append(line)

    def fail(self, message: str, exit_code: int = 2) -> AdminOutput:
        self.errors.append(message)
        self.exit_code = exit_code
        return self


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`30m`, `2h`, `7d` (that long ago) or an ISO date/time (UTC unless it names a zone)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: use e.g. 30m, 2h, 7d or 2026-11-20T06:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _actor() -> str:
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry, e.g. in a container with a numeric uid
        return "os:unknown"


def _status(code: int) -> str:
    return ua.StatusCode(ua.UInt32(code)).name


class Administration:
    """One admin command's access to the store, the PKI and the audit log of a deployment."""

    def __init__(self, config: QualityBridgeConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.layout = PkiLayout(config.pki_dir)
        self._audit = AuditLogStore(store.engine)
        self._actor = _actor()
        self._origin = f"cli@{socket.gethostname()}"

    @classmethod
    @asynccontextmanager
    async def open(cls, config: QualityBridgeConfig) -> AsyncIterator[Administration]:
        store = await open_store(config.store_url, sqlite_synchronous=config.store.sqlite_synchronous)
        try:
            yield cls(config, store)
        finally:
            await store.aclose()

    async def _record(self, action: str, code: int, *, node: str | None = None, arguments: str | None = None) -> None:
        await self._audit.append(
            [
                AuditEntry(
                    at=datetime.now(UTC),
                    kind=AuditKind.ADMIN,
                    action=action,
                    status_code=code,
                    status_name=_status(code),
                    user_name=self._actor,
                    remote_address=self._origin,
                    node=node,
                    arguments=arguments,
                )
            ]
        )

    @property
    def actor(self) -> str:
        """Who runs this command, as the audit log names them (the operating system account)."""
        return self._actor

    async def record(self, action: str, code: int, *, node: str | None = None, arguments: str | None = None) -> None:
        """Write one admin action to the audit log: for commands whose work lives in their own module."""
        await self._record(action, code, node=node, arguments=arguments)

    async def _refused(self, output: AdminOutput, action: str, exc: Exception, *, node: str | None) -> AdminOutput:
        code = ua.StatusCodes.BadNotFound if isinstance(exc, FileNotFoundError) else ua.StatusCodes.BadInvalidArgument
        await self._record(action, code, node=node, arguments=str(exc))
        return output.fail(f"qualitybridge {action}: {exc}")

    # ---- PKI ----------------------------------------------------------------------------------------

    def pki_list(self) -> AdminOutput:
        output = AdminOutput()
        self.layout.ensure()
        for group, certificates in list_certificates(self.layout).items():
            output.say(f"{group}:")
            for info in certificates:
                output.say(f"  {info.thumbprint}  {info.subject}  valid until {info.not_after:%Y-%m-%d}")
            if not certificates:
                output.say("  (none)")
        return output

    def _full_thumbprint(self, text: str, *folders: str) -> str:
        """A thumbprint as `audit-log` and `pki list` print it (a prefix of 6+ hex digits, colons allowed) becomes the
        full one when exactly one certificate in `folders` starts with it; anything else is passed on unchanged."""
        wanted = text.strip().replace(":", "").replace(" ", "").lower()
        if Path(text).is_file() or not 6 <= len(wanted) < 40 or not re.fullmatch(r"[0-9a-f]+", wanted):
            return text
        listed = list_certificates(self.layout)
        found = sorted(
            {info.thumbprint for folder in folders for info in listed[folder] if info.thumbprint.startswith(wanted)}
        )
        if len(found) > 1:
            raise ValueError(f"{text!r} matches {len(found)} certificates ({', '.join(found)}): give more digits")
        return found[0] if found else text

    async def pki_trust(self, file_or_thumbprint: str) -> AdminOutput:
        output = AdminOutput()
        try:
            path = trust_certificate(self.layout, self._full_thumbprint(file_or_thumbprint, "rejected"))
        except (FileNotFoundError, ValueError) as exc:
            return await self._refused(output, "pki trust", exc, node=file_or_thumbprint)
        await self._record("pki trust", ua.StatusCodes.Good, node=path.stem, arguments=f"from {file_or_thumbprint}")
        output.say(f"trusted: {path} (takes effect for the next connection, no restart needed)")
        return output

    async def pki_reject(self, certificate_thumbprint: str) -> AdminOutput:
        output = AdminOutput()
        try:
            path = reject_certificate(self.layout, self._full_thumbprint(certificate_thumbprint, "trusted"))
        except (FileNotFoundError, ValueError) as exc:
            return await self._refused(output, "pki reject", exc, node=certificate_thumbprint)
        await self._record("pki reject", ua.StatusCodes.Good, node=path.stem)
        output.say(f"rejected: {path} (its open sessions end within seconds)")
        return output

    async def pki_remove(self, certificate_thumbprint: str) -> AdminOutput:
        output = AdminOutput()
        try:
            removed = remove_certificate(
                self.layout, self._full_thumbprint(certificate_thumbprint, "trusted", "issuer", "rejected")
            )
        except (FileNotFoundError, ValueError) as exc:
            return await self._refused(output, "pki remove", exc, node=certificate_thumbprint)
        await self._record(
            "pki remove",
            ua.StatusCodes.Good,
            node=removed[0].stem,
            arguments=", ".join(str(path.parent.parent.name) for path in removed),
        )
        for path in removed:
            output.say(f"removed: {path}")
        return output

    def pki_show_own(self) -> AdminOutput:
        output = AdminOutput()
        try:
            info = describe_own_certificate(self.layout)
        except FileNotFoundError:
            return output.fail(
                f"qualitybridge pki show-own: no server certificate yet at {self.layout.own_certificate_path} "
                "(the server creates one at its first start)",
                exit_code=1,
            )
        output.say(f"certificate:  {info.path}")
        output.say(f"thumbprint:   {info.thumbprint}")
        output.say(f"subject:      {info.subject}")
        output.say(f"issuer:       {info.issuer}{'  (self-signed)' if info.self_signed else ''}")
        output.say(f"valid:        {info.not_before:%Y-%m-%d %H:%M} to {info.not_after:%Y-%m-%d %H:%M} UTC")
        output.say(f"URIs:         {', '.join(info.uris) or '-'}")
        output.say(f"DNS names:    {', '.join(info.dns_names) or '-'}")
        uri = self.config.server.effective_application_uri
        for warning in own_certificate_warnings(self.layout, uri):
            output.say(f"warning:      {warning}")
        return output

    async def pki_install_own(self, certificate_file: Path, key_file: Path) -> AdminOutput:
        output = AdminOutput()
        uri = self.config.server.effective_application_uri
        try:
            info = install_own_certificate(self.layout, certificate_file, key_file, application_uri=uri)
        except (FileNotFoundError, ValueError) as exc:
            return await self._refused(output, "pki install-own", exc, node=str(certificate_file))
        await self._record(
            "pki install-own", ua.StatusCodes.Good, node=info.thumbprint, arguments=f"issuer {info.issuer}"
        )
        output.say(f"installed: {info.thumbprint} issued by {info.issuer}, valid until {info.not_after:%Y-%m-%d}")
        output.say(
            "the running server serves it to new connections within "
            f"{self.config.security.reload_interval_seconds:g} s; clients must trust the issuing CA"
        )
        return output

    # ---- users --------------------------------------------------------------------------------------

    async def _user(self, name: str) -> StoredUser | None:
        return next((user for user in await self.store.users() if user.name == name), None)

    async def users_add(
        self,
        name: str,
        role: str,
        *,
        password: str | None,
        work_centres: Sequence[str] = (),
        certificate_file: Path | None = None,
    ) -> AdminOutput:
        """Create or replace an account; `password` None is allowed only with a certificate."""
        output = AdminOutput()
        try:
            parsed_role = Role(role)
            if password is None and certificate_file is None:
                raise ValueError("give a password, a certificate, or both")
            if password is not None and len(password) < MIN_PASSWORD_LENGTH:
                raise ValueError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
            fingerprint = None
            if certificate_file is not None:
                fingerprint = thumbprint(load_certificate_bytes(await asyncio.to_thread(certificate_file.read_bytes)))
                holder = next(
                    (u for u in await self.store.users() if u.certificate_thumbprint == fingerprint and u.name != name),
                    None,
                )
                if holder is not None:
                    raise ValueError(f"certificate {fingerprint} is already bound to user {holder.name}")
        except (FileNotFoundError, ValueError) as exc:
            return await self._refused(output, "users add", exc, node=name)
        password_hash = hash_password(password) if password is not None else NO_PASSWORD
        await self.store.save_user(
            StoredUser(name, parsed_role.value, password_hash, tuple(work_centres), certificate_thumbprint=fingerprint)
        )
        details = f"role={parsed_role.value}, work_centres={','.join(work_centres) or '-'}"
        if fingerprint:
            details += f", certificate={fingerprint}"
        await self._record("users add", ua.StatusCodes.Good, node=name, arguments=details)
        output.say(f"user {name} saved with role {parsed_role.value} (the running server applies it within seconds)")
        return output

    async def users_remove(self, name: str) -> AdminOutput:
        output = AdminOutput()
        if not await self.store.remove_user(name):
            return await self._refused(output, "users remove", FileNotFoundError(f"no user {name!r}"), node=name)
        await self._record("users remove", ua.StatusCodes.Good, node=name)
        output.say(f"user {name} removed (its open sessions end within seconds)")
        return output

    async def users_passwd(self, name: str, password: str) -> AdminOutput:
        output = AdminOutput()
        user = await self._user(name)
        if user is None:
            return await self._refused(output, "users passwd", FileNotFoundError(f"no user {name!r}"), node=name)
        if len(password) < MIN_PASSWORD_LENGTH:
            error = ValueError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
            return await self._refused(output, "users passwd", error, node=name)
        await self.store.save_user(
            StoredUser(
                user.name,
                user.role,
                hash_password(password),
                user.work_centres,
                certificate_thumbprint=user.certificate_thumbprint,
            )
        )
        await self._record("users passwd", ua.StatusCodes.Good, node=name)
        output.say(f"password of {name} changed (its open sessions end within seconds)")
        return output

    async def users_list(self) -> AdminOutput:
        output = AdminOutput()
        output.say(f"{'NAME':<20} {'ROLE':<16} {'WORK CENTRES':<20} {'LOGIN':<9} CERTIFICATE")
        for user in await self.store.users():
            centres = ",".join(user.work_centres) or "-"
            login = "password" if user.password_hash != NO_PASSWORD else "cert-only"
            output.say(f"{user.name:<20} {user.role:<16} {centres:<20} {login:<9} {user.certificate_thumbprint or '-'}")
        return output

    # ---- audit log ----------------------------------------------------------------------------------

    async def resync(self) -> AdminOutput:
        """Forget where the delta syncs stand: the next sync round fetches all master data once."""
        output = AdminOutput()
        sources = await self.store.forget_watermarks()
        await self._record("resync", ua.StatusCodes.Good, node=",".join(sources) or None)
        if sources:
            output.say(
                f"the next sync of {', '.join(sources)} fetches everything once (a running server: within "
                "[erp] sync_interval_seconds), then deltas again"
            )
        else:
            output.say("no source has been synced yet: the first sync fetches everything anyway")
        return output

    async def audit_log(self, *, since: str | None, user: str | None, limit: int) -> AdminOutput:
        output = AdminOutput()
        try:
            since_moment = parse_since(since) if since else None
        except ValueError as exc:
            return output.fail(f"qualitybridge audit-log: {exc}")
        entries = await self._audit.entries(since=since_moment, user_name=user, limit=limit)
        output.say(
            f"{'TIME (UTC)':<23} {'KIND':<7} {'ACTION':<26} {'STATUS':<26} {'USER':<18} {'FROM':<22} "
            "CLIENT CERT  NODE  ARGUMENTS"
        )
        for entry in entries:
            output.say(
                f"{entry.at:%Y-%m-%d %H:%M:%S.%f}"[:23]
                + f" {entry.kind.value:<7} {entry.action:<26} {entry.status_name:<26} {entry.user_name or '-':<18}"
                f" {entry.remote_address or '-':<22} {(entry.client_thumbprint or '-')[:11]:<11}"
                f"  {entry.node or '-'}  {entry.arguments or ''}".rstrip()
            )
        if not entries:
            output.say("(no entries)")
        return output


AdminCommand = Callable[[Administration, argparse.Namespace], Awaitable[AdminOutput]]


def run_admin(arguments: argparse.Namespace, command: AdminCommand) -> int:
    """Run one admin command against the deployment the arguments name; print its output; answer its exit code."""
    setup_logging("WARNING")
    output = asyncio.run(_run_admin(arguments, command))
    for line in output.lines:
        print(line)  # noqa: T201
    for line in output.errors:
        print(line, file=sys.stderr)  # noqa: T201
    return output.exit_code


async def _run_admin(arguments: argparse.Namespace, command: AdminCommand) -> AdminOutput:
    async with Administration.open(config_for_admin(arguments)) as admin:
        return await command(admin, arguments)
