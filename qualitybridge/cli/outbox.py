"""`qualitybridge outbox list|retry|discard`: what is owed to the ERP, and a person's decisions about it.

Works on the store directly (like `users`), so it runs beside a serving QualityBridge: the relay picks up a retried
entry within one relay interval, and Diagnostics shows the new dead-letter count after its next round.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys

from qualitybridge.cli.common import add_target, config_for_admin, setup_logging
from qualitybridge.config import QualityBridgeConfig
from qualitybridge.store import open_store
from qualitybridge.store.outbox_admin import OUTBOX_STATES, OutboxRecord

__all__ = ["register", "run_outbox_command"]

_HELP = """\
examples:
  qualitybridge outbox list --state dead --config qualitybridge.toml
  qualitybridge outbox list --order 1000417 --verbose
  qualitybridge outbox retry 17 18                 dead letters 17 and 18 back into the queue, attempts reset
  qualitybridge outbox retry --all-dead
  qualitybridge outbox discard 19 --reason "booked by hand in the ERP as QC-4711"

States: pending (waiting for delivery), sent (booked by the ERP), dead (given up; needs a person),
discarded (a person decided it is not to be delivered). Nothing is ever deleted.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    outbox = commands.add_parser(
        "outbox",
        help="postings owed to the ERP: list, retry dead letters, discard",
        epilog=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    outbox_commands = outbox.add_subparsers(dest="outbox_command", required=True, metavar="OUTBOX_COMMAND")

    listing = outbox_commands.add_parser("list", help="list outbox entries, oldest first")
    listing.add_argument("--state", action="append", choices=OUTBOX_STATES, help="only this state (repeatable)")
    listing.add_argument("--order", help="only postings of this order")
    listing.add_argument("--limit", type=int, default=200, help="at most this many entries (default 200)")
    listing.add_argument("--verbose", action="store_true", help="also show each posting's payload")
    add_target(listing)

    retry = outbox_commands.add_parser("retry", help="put dead letters back into the queue, attempts reset")
    retry.add_argument("seq", nargs="*", type=int, default=[], help="entry numbers as shown by `outbox list`")
    retry.add_argument("--all-dead", action="store_true", help="every dead letter (instead of entry numbers)")
    add_target(retry)

    discard = outbox_commands.add_parser("discard", help="mark an entry as not to be delivered, with a reason")
    discard.add_argument("seq", type=int, help="entry number as shown by `outbox list`")
    discard.add_argument("--reason", required=True, help="why; kept with the entry for whoever looks next")
    add_target(discard)
    outbox.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    setup_logging("WARNING")
    return asyncio.run(run_outbox_command(arguments, config_for_admin(arguments)))


def _line(record: OutboxRecord) -> str:
    moment = record.sent_at or record.discarded_at or record.created_at
    detail = record.erp_document or record.discard_reason or record.last_error or ""
    return (
        f"{record.seq:>7}  {record.state:<9}  {record.kind:<12} {record.order_no:<12} {record.attempts:>3}  "
        f"{moment:%Y-%m-%d %H:%M:%S}  {record.idempotency_key}  {detail[:100]}"
    )


def _print(text: str, *, error: bool = False) -> None:
    print(text, file=sys.stderr if error else sys.stdout)


async def run_outbox_command(arguments: argparse.Namespace, config: QualityBridgeConfig) -> int:
    store = await open_store(config.store_url, sqlite_synchronous=config.store.sqlite_synchronous)
    try:
        if arguments.outbox_command == "list":
            records = await store.outbox_records(arguments.state or (), arguments.order, arguments.limit)
            _print(f"{'seq':>7}  {'state':<9}  {'kind':<12} {'order':<12} {'try':>3}  {'when (UTC)':<19}  key  detail")
            for record in records:
                _print(_line(record))
                if arguments.verbose:
                    _print(f"         payload: {json.dumps(record.payload, sort_keys=True)}")
            if not records:
                _print("  (no entries)")
            return 0
        if arguments.outbox_command == "retry":
            if bool(arguments.seq) == arguments.all_dead:
                _print("qualitybridge outbox retry: give entry numbers or --all-dead (one of them)", error=True)
                return 2
            moved = await store.retry_dead(None if arguments.all_dead else arguments.seq)
            missing = sorted(set(arguments.seq) - set(moved))
            if moved:
                _print(f"back in the queue: {' '.join(map(str, moved))} (the relay delivers them within one interval)")
            if missing:
                _print(f"qualitybridge outbox retry: not dead letters: {' '.join(map(str, missing))}", error=True)
                return 2
            if not moved:
                _print("no dead letters")
            return 0
        try:
            record = await store.discard(arguments.seq, arguments.reason, getpass.getuser())
        except (LookupError, ValueError) as exc:
            _print(f"qualitybridge outbox discard: {exc}", error=True)
            return 2
        _print(f"discarded: {_line(record)}")
        return 0
    finally:
        await store.aclose()
