"""Upkeep of the running server's security, on a schedule: admin changes reach it without a restart.

The admin commands (`qualitybridge users …`, `qualitybridge pki …`) run in their own process and change only
the store and the PKI folders. The server looks at both every `security.reload_interval_seconds`:

- users: one SELECT of the (small) users table, compared with what the user manager holds; accounts that
  changed are swapped in and their open sessions end;
- trust list: the validator re-reads the folders when their listing changed; open sessions whose client
  certificate is no longer accepted end;
- own certificate files: when `pki install-own` replaced them, the new pair is served from then on;

and, less often, renews or reloads its own certificate (`security.certificate_check_minutes`) and purges
audit entries past `audit.retention_days` (`audit.purge_interval_hours`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from qualitybridge.config import QualityBridgeConfig
from qualitybridge.server.security.identity import Role, UserAccount
from qualitybridge.server.security.setup import SecurityOptions, ServerSecurity
from qualitybridge.services.audit_trail import AuditTrail
from qualitybridge.store import Store, StoredUser

__all__ = ["SecurityJobs", "accounts_from_store", "security_options"]

_log = logging.getLogger(__name__)


def accounts_from_store(users: Iterable[StoredUser]) -> list[UserAccount]:
    return [UserAccount(u.name, Role(u.role), u.password_hash, u.work_centres, u.certificate_thumbprint) for u in users]


def security_options(config: QualityBridgeConfig, trail: AuditTrail) -> SecurityOptions:
    return SecurityOptions(
        audit=trail,
        audit_events=config.audit.opcua_events,
        renew_before=timedelta(days=config.security.certificate_renew_before_days),
        certificate_valid_days=config.security.certificate_valid_days,
    )


class SecurityJobs:
    def __init__(self, config: QualityBridgeConfig, store: Store, trail: AuditTrail, security: ServerSecurity) -> None:
        self._config = config
        self._store = store
        self._trail = trail
        self._security = security
        self.last_refresh_seconds = 0.0

    async def start(self, scheduler: Any) -> None:
        """Call after the OPC UA server started; adds the jobs to the app's (apscheduler) scheduler."""
        await self._security.started()
        self._trail.start()
        now = datetime.now(UTC)
        jobs = (
            ("security-refresh", self.refresh, timedelta(seconds=self._config.security.reload_interval_seconds)),
            (
                "own-certificate",
                self._security.own_certificate.check,
                timedelta(minutes=self._config.security.certificate_check_minutes),
            ),
            ("audit-purge", self.purge, timedelta(hours=self._config.audit.purge_interval_hours)),
        )
        for job_id, job, interval in jobs:
            scheduler.add_job(
                job,
                "interval",
                seconds=interval.total_seconds(),
                next_run_time=now + interval if job_id == "security-refresh" else now,
                id=job_id,
                max_instances=1,
                coalesce=True,
            )

    async def refresh(self) -> None:
        """Apply user and trust list changes; measured because it runs every few seconds."""
        started = time.perf_counter()
        await self._security.apply_accounts(accounts_from_store(await self._store.users()))
        await self._security.revalidate_sessions()
        await self._security.own_certificate.check_if_files_changed()
        self.last_refresh_seconds = time.perf_counter() - started

    async def purge(self) -> None:
        await self._trail.purge(timedelta(days=self._config.audit.retention_days))

    async def stop(self) -> None:
        """Call before the store closes: writes the audit entries still pending."""
        await self._security.stopping()
        await self._trail.stop()
