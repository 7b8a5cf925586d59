"""`qualitybridge report ORDER`: the quality report of one order as a self-contained HTML file.

Reads the store directly (like `outbox`), so it runs beside a serving QualityBridge and also for orders the ERP
has withdrawn since. The file needs no server and no network: open it in a browser, mail it, print it to PDF.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from qualitybridge.app import spc_policy
from qualitybridge.cli.common import add_target, config_for_admin, setup_logging
from qualitybridge.config import QualityBridgeConfig
from qualitybridge.services.order_report import gather_order_report, render_order_report
from qualitybridge.store import open_store

__all__ = ["order_report_html", "register"]

_HELP = """\
examples:
  qualitybridge report 1000417 --config qualitybridge.toml            writes ./report-1000417.html
  qualitybridge report 1000417 --data-dir ./data -o /tmp/audit-1000417.html

The report holds a control chart per characteristic (values, tolerance and control limits, violations marked),
Cp/Cpk, the gauges used with their calibration state at measurement time, the confirmations, the SPC alarms and
the order's KPIs (docs/kpis.md).
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = commands.add_parser(
        "report",
        help="write an order's quality report (HTML, opens in any browser)",
        epilog=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("order", help="the order number")
    report.add_argument("-o", "--output", type=Path, help="the HTML file to write (default ./report-ORDER.html)")
    add_target(report)
    report.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    setup_logging("WARNING")
    output = arguments.output or Path(f"report-{arguments.order}.html")
    began = time.perf_counter()
    try:
        document = asyncio.run(order_report_html(config_for_admin(arguments), arguments.order))
    except LookupError as exc:
        print(f"qualitybridge report: {exc.args[0]}", file=sys.stderr)  # noqa: T201
        return 2
    output.write_text(document, encoding="utf-8")
    seconds = time.perf_counter() - began
    print(f"wrote {output} ({len(document) // 1024} KiB in {seconds:.2f} s)")  # noqa: T201
    return 0


async def order_report_html(config: QualityBridgeConfig, order_no: str) -> str:
    """The order's report as one HTML document; LookupError for an order the store never had."""
    store = await open_store(config.store_url, sqlite_synchronous=config.store.sqlite_synchronous)
    try:
        report = await gather_order_report(store, order_no, policy=spc_policy(config.spc))
    finally:
        await store.aclose()
    return render_order_report(report)
