"""`qualitybridge audit-log`: who did what — logins, method calls, writes, admin changes."""

from __future__ import annotations

import argparse

from qualitybridge.cli.administration import Administration, AdminOutput, run_admin
from qualitybridge.cli.common import add_target

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser("audit-log", help="who did what: logins, method calls, writes, admin changes")
    audit.add_argument("--since", help="30m, 2h, 7d or an ISO time (UTC)")
    audit.add_argument("--user", help="only this user (OS account for admin changes: os:<name>)")
    audit.add_argument("--limit", type=int, default=100, help="newest N entries (default 100)")
    add_target(audit)
    audit.set_defaults(run=lambda arguments: run_admin(arguments, _dispatch))


async def _dispatch(admin: Administration, arguments: argparse.Namespace) -> AdminOutput:
    return await admin.audit_log(since=arguments.since, user=arguments.user, limit=arguments.limit)
