"""The status page: one read-only HTML page with what /readyz and /metrics say, for a person at a browser.

Plain HTML with a refresh every 10 s; no scripts, no external assets, nothing to build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape

from qualitybridge.domain.build import BuildIdentity
from qualitybridge.server.operations.readiness import Check
from qualitybridge.services.metrics import HealthSnapshot

__all__ = ["render_status_page"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:.3em .7em;text-align:left}
.ok{color:#17692b;font-weight:bold}.bad{color:#b00020;font-weight:bold}
"""


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], raw: bool = False) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell if raw else escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<h2>{escape(title)}</h2><table><tr>{head}</tr>{body}</table>"


def _moment(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "never"


def render_status_page(
    build: BuildIdentity,
    endpoint_url: str,
    checks: Sequence[Check],
    health: HealthSnapshot,
    live: Callable[[], dict[str, int]],
) -> str:
    ready = all(check.ok for check in checks)
    verdict = '<span class="ok">READY</span>' if ready else '<span class="bad">NOT READY</span>'
    check_rows = [
        [
            escape(check.name),
            '<span class="ok">ok</span>' if check.ok else '<span class="bad">failing</span>',
            escape(check.detail),
        ]
        for check in checks
    ]
    counts = live()
    figures = [
        ["OPC UA endpoint", endpoint_url],
        *[[name, str(value)] for name, value in counts.items()],
        ["Outbox pending", str(health.outbox_depth)],
        ["Outbox dead letters", str(health.outbox_dead_letters)],
        ["Oldest pending posting", _moment(health.outbox_oldest_at)],
        ["Last successful ERP sync", _moment(health.last_sync_succeeded_at)],
        ["ERP sync errors", str(health.sync_error_count)],
        ["Last ERP sync error", health.last_sync_error or "-"],
    ]
    calls = [[method, status, str(n)] for (method, status), n in sorted(health.calls.items())]
    postings = [[target, outcome, str(n)] for (target, outcome), n in sorted(health.postings.items())]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='refresh' content='10'>"
        f"<title>{escape(build.product_name)} status</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(str(build))}: {verdict}</h1>"
        + _table("Readiness", ["check", "state", "detail"], check_rows, raw=True)
        + _table("Figures", ["what", "value"], figures)
        + _table("Method calls since start", ["method", "StatusCode", "calls"], calls or [["-", "-", "0"]])
        + _table("Relay postings since start", ["target", "outcome", "postings"], postings or [["-", "-", "0"]])
        + "<p>Machine-readable: <a href='/readyz'>/readyz</a>, <a href='/metrics'>/metrics</a>, "
        "<a href='/healthz'>/healthz</a></p></body></html>"
    )
