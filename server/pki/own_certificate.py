"""Keeps the running server's own certificate current: renews a self-signed one before it expires and loads
a newly installed one (``qualitybridge pki install-own``) without a restart.

asyncua reads its certificate and key once, when the server starts, into the InternalServer, the security
policy factories (one per endpoint) and the endpoint descriptions. `OwnCertificateKeeper.check` replaces
them in all three places; secure channels opened afterwards use the new certificate, open ones keep theirs
until they renew or reconnect. Clients that pinned the old certificate must trust the new one (self-signed)
or already trust the plant CA (CA-signed).

asyncua internals: Server.iserver (certificate, private_key, endpoints), Server._policies (the policy factories)
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Sequence

from asyncua import Server
from cryptography.hazmat.primitives import serialization

from qualitybridge.server.pki.certificates import thumbprint
from qualitybridge.server.pki.layout import PkiLayout
from qualitybridge.server.pki.own_pair import (
    RENEW_BEFORE,
    OwnPair,
    own_certificate_warnings,
    read_own_pair,
    renew_own_certificate_if_due,
)

__all__ = ["OwnCertificateKeeper"]

_log = logging.getLogger(__name__)

# Told about each change with (action, description), e.g. for the audit trail.
ChangeListener = Callable[[str, str], None]


class OwnCertificateKeeper:
    def __init__(
        self,
        server: Server,
        layout: PkiLayout,
        application_uri: str,
        hostnames: Sequence[str],
        *,
        renew_before: datetime.timedelta = RENEW_BEFORE,
        valid_days: int = 730,
        on_change: ChangeListener | None = None,
    ) -> None:
        self._server = server
        self._layout = layout
        self._application_uri = application_uri
        self._hostnames = list(hostnames)
        self._renew_before = renew_before
        self._valid_days = valid_days
        self._on_change = on_change
        self.loaded_thumbprint: str | None = None
        self._seen_files: tuple[tuple[int, int], ...] | None = None

    def _file_signature(self) -> tuple[tuple[int, int], ...]:
        signature = []
        for path in (self._layout.own_certificate_path, self._layout.own_private_key_path):
            try:
                stat = path.stat()
            except OSError:
                signature.append((-1, -1))
            else:
                signature.append((stat.st_size, stat.st_mtime_ns))
        return tuple(signature)

    async def check_if_files_changed(self) -> str | None:
        """Cheap enough for every few seconds: `check` only when the own certificate or key file changed,
        so `pki install-own` takes effect at once rather than at the next scheduled check."""
        signature = self._file_signature()
        if signature == self._seen_files:
            return None
        self._seen_files = signature
        return await self.check()

    def note_loaded(self) -> None:
        """Remember which certificate asyncua loaded at start."""
        certificate = self._server.iserver.certificate
        self.loaded_thumbprint = thumbprint(certificate) if certificate is not None else None
        self._seen_files = self._file_signature()

    async def check(self, *, now: datetime.datetime | None = None) -> str | None:
        """Renew if due, load what is on disk if it differs from what is served; returns what happened."""
        renewed = await asyncio.to_thread(
            renew_own_certificate_if_due,
            self._layout,
            self._application_uri,
            self._hostnames,
            renew_before=self._renew_before,
            valid_days=self._valid_days,
            now=now,
        )
        for warning in own_certificate_warnings(
            self._layout, self._application_uri, renew_before=self._renew_before, now=now
        ):
            _log.warning("%s", warning)
        try:
            pair = await asyncio.to_thread(read_own_pair, self._layout)
        except ValueError as exc:
            _log.warning(
                "Own certificate on disk not usable right now (%s); still serving %s", exc, self.loaded_thumbprint
            )
            return None
        if pair.thumbprint == self.loaded_thumbprint:
            return None
        previous = self.loaded_thumbprint
        self._load(pair)
        action = "own certificate renewed" if renewed else "own certificate loaded"
        description = f"{previous} -> {pair.thumbprint}, valid until {pair.certificate.not_valid_after_utc:%Y-%m-%d}"
        _log.warning("%s: %s", action, description)
        if self._on_change is not None:
            self._on_change(action, description)
        return action

    def _load(self, pair: OwnPair) -> None:
        iserver = self._server.iserver
        iserver.certificate = pair.certificate
        iserver.private_key = pair.private_key
        # Same list object as the binary server's: new secure channels are created from these factories.
        for factory in self._server._policies:
            if factory.certificate is not None:
                factory.certificate = pair.certificate
                factory.private_key = pair.private_key
        der = pair.certificate.public_bytes(serialization.Encoding.DER)
        for endpoint in iserver.endpoints:
            if endpoint.ServerCertificate:
                endpoint.ServerCertificate = der
        self.loaded_thumbprint = pair.thumbprint
