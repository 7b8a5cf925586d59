"""A small HTTP/1.1 server for the operations endpoint, on the app's own event loop (asyncio streams).

Only GET and HEAD of four fixed paths; one request per connection (`Connection: close`). That is all a probe,
a Prometheus scraper or a browser needs, and it adds no thread, no second loop and no signal handling of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from qualitybridge.server.operations.readiness import Check, Readiness

__all__ = ["OperationsEndpoint"]

_log = logging.getLogger(__name__)

_MAX_HEADER_LINES = 100
_READ_TIMEOUT = 10.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request", 503: "Service Unavailable"}

StatusPage = Callable[[list[Check]], Awaitable[str]]


class OperationsEndpoint:
    def __init__(
        self, host: str, port: int, *, readiness: Readiness, registry: CollectorRegistry, status_page: StatusPage
    ) -> None:
        self._host = host
        self._port = port
        self._readiness = readiness
        self._registry = registry
        self._status_page = status_page
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port, reuse_address=True)
        self._port = int(self._server.sockets[0].getsockname()[1])  # the chosen one when configured as 0
        _log.info("operations endpoint %s (healthz, readyz, metrics, status page)", self.url)

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        if host in ("0.0.0.0", "[::]"):  # noqa: S104 - naming it, not binding it
            host = "127.0.0.1"
        return f"http://{host}:{self._port}/"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, content_type, body, head_only = await asyncio.wait_for(self._answer(reader), _READ_TIMEOUT)
            header = (
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            )
            writer.write(header.encode("ascii") + (b"" if head_only else body))
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that went away or never finished its request gets nothing
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes, bool]:
        request_line = (await reader.readline()).decode("latin-1").split()
        for _ in range(_MAX_HEADER_LINES):
            if (await reader.readline()) in (b"\r\n", b"\n", b""):
                break
        if len(request_line) != 3:
            return 400, "text/plain; charset=utf-8", b"bad request\n", False
        method, target, _version = request_line
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"only GET and HEAD\n", False
        head = method == "HEAD"
        path = target.split("?", 1)[0]
        if path == "/healthz":
            return 200, "text/plain; charset=utf-8", b"ok\n", head
        if path == "/readyz":
            checks = await self._readiness.checks()
            ready = all(check.ok for check in checks)
            body = {"ready": ready, "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks}}
            return (200 if ready else 503), "application/json", json.dumps(body).encode() + b"\n", head
        if path == "/metrics":
            return 200, CONTENT_TYPE_PLAIN_0_0_4, generate_latest(self._registry), head
        if path in ("/", "/status"):
            page = await self._status_page(await self._readiness.checks())
            return 200, "text/html; charset=utf-8", page.encode("utf-8"), head
        return 404, "text/plain; charset=utf-8", b"not found: try /healthz, /readyz, /metrics or /\n", head
