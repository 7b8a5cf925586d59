"""`qualitybridge resync`: the next ERP sync fetches all master data once instead of a delta."""

from __future__ import annotations

import argparse

from qualitybridge.cli.administration import Administration, AdminOutput, run_admin
from qualitybridge.cli.common import add_target

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    resync = commands.add_parser(
        "resync",
        help="make the next ERP sync fetch everything once (e.g. after limits changed at SAP without an order change)",
        description="Forget the stored sync watermarks: the next sync round (of the running server, or at the next "
        "start) fetches all released orders, characteristics and gauges once and compares them with the store, then "
        "continues with deltas.",
    )
    add_target(resync)
    resync.set_defaults(run=lambda arguments: run_admin(arguments, _dispatch))


async def _dispatch(admin: Administration, arguments: argparse.Namespace) -> AdminOutput:
    del arguments
    return await admin.resync()
