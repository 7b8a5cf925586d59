"""The outbox relay in a process of its own, forked by `qualitybridge serve` before its event loop starts.

Why: the relay's work per posting (the outbox page, the REST batch and its answer, the marks) ran on the OPC UA
server's event loop, and one interpreter runs Python on one core at a time. At 15,000 measurements/s in batches that
loop was saturated: it stored ~13,000/s and relayed ~6,500/s while the machines reported. In a process of its own
the relay runs on the machine's other core: 15,133/s stored and 14,950/s relayed on the same 2-core machine
(docs/performance.md, "tenth session: the relay's own process"). The outbox in the store stays the hand-over
between reporting and relaying; SQLite's WAL lets the relay read beside the server's commits, and the two
processes take turns at the write lock (PostgreSQL: row locks).

The server stays the one owner of the event bus. The worker's events (postings attempted, dead-lettered) and its
outbox figures come back over a pipe, a JSON line each, and the server publishes them (OPC UA events, diagnostics,
metrics) exactly as its own relay raised them. The server wakes the worker over another pipe, a byte per burst of
postings owed to the ERP.

Forked, not spawned: the fork comes before the server has a thread, a socket or an event loop, so the worker starts
with the imports done (an interpreter of its own paid a second or two of CPU for them) and no lock half-held.

Its life:
- the worker opens the store and relays only once the server says `start` (after the server has opened and
  migrated the store and run its first sync: where the server started its own relay before);
- the server's stop closes the wake pipe: the worker ends its round, records what it delivered and exits; one that
  has not within `stop_seconds` is killed (what it delivered and had not recorded is delivered again, as after a
  crash: the REST contract's idempotency keys absorb the repeat);
- a server that dies closes the pipe as well, and the worker ends the same way;
- a worker that ends while the server runs is logged as an error, and the server relays in its own process from
  then on (`on_lost`): postings keep flowing, only slower under heavy load;
- one worker relays at a time: it holds `relay.lock` in the data folder while it lives, and a new one waits for an
  old one (a killed server's, ending its round) to be gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from qualitybridge.adapters.factory import erp_client_for
from qualitybridge.config import QualityBridgeConfig
from qualitybridge.domain.events import DiagnosticsChanged, DomainEvent, PostingAttempted, PostingDeadLettered
from qualitybridge.domain.ports import ErpClient
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.outbox_relay import OutboxRelay
from qualitybridge.store import Store, open_store_waiting

__all__ = ["RelayProcess", "decode_report", "encode_report", "outbox_relay_for"]

_log = logging.getLogger(__name__)

_START, _WAKE = b"s", b"w"
PROCESS_NAME = "qb-outbox-relay"  # the worker's name in top and ps -o comm (Linux: at most 15 characters)
RELAY_LOCK_FILE = "relay.lock"  # in the data folder: held by the relay process that relays
# At most one wake per this many seconds, the last of a busy moment sent when it is over: the relay gathers a tenth
# of a second or more before a round anyway, and a wake per group commit (hundreds a second under single calls) cost
# the server's event loop 3 % of its time in writes that woke the worker for nothing.
WAKE_SPACING_SECONDS = 0.05


# ---- the reports: the worker's events as one JSON line each --------------------------------------------------


def encode_report(event: DomainEvent) -> bytes | None:
    """The line the worker sends for `event`; None for events the server does not need to hear of."""
    match event:
        case PostingAttempted(target=target, outcome=outcome, count=count):
            message: dict[str, Any] = {"attempted": [target, outcome, count]}
        case PostingDeadLettered(idempotency_key=key, kind=kind, order_no=order_no, attempts=attempts):
            # The ERP's error text is unbounded; the store keeps its first 2,000 characters, so does the report.
            message = {"dead_lettered": [key, kind, order_no, attempts, event.last_error[:_ERROR_TEXT]]}
        case DiagnosticsChanged(outbox_depth=depth, outbox_dead_letters=dead, outbox_oldest_at=oldest):
            message = {"outbox": [depth, dead, oldest.isoformat() if oldest is not None else None]}
        case _:
            return None
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


_ERROR_TEXT = 2000
_REPORT_LINE_LIMIT = 1 << 20  # far above any report (an error text of 2,000 characters and a few names)
_OutboxFigures = tuple[int, int, datetime | None]


def decode_report(line: bytes) -> DomainEvent | _OutboxFigures:
    """An event to publish, or the outbox figures (depth, dead letters, oldest pending) for the diagnostics.
    Raises ValueError for a line that is neither."""
    try:
        message = json.loads(line)
        if "attempted" in message:
            target, outcome, count = message["attempted"]
            return PostingAttempted(str(target), str(outcome), int(count))
        if "dead_lettered" in message:
            key, kind, order_no, attempts, last_error = message["dead_lettered"]
            return PostingDeadLettered(str(key), str(kind), str(order_no), int(attempts), str(last_error))
        depth, dead, oldest = message["outbox"]
        return int(depth), int(dead), datetime.fromisoformat(oldest) if oldest is not None else None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a report of the relay's process: {line[:200]!r}") from exc


# ---- the server's side ---------------------------------------------------------------------------------------


class RelayProcess:
    """The server's handle on its relay worker: start it, wake it, hear from it, stop it."""

    def __init__(self, pid: int, commands: int, reports: int, *, stop_seconds: float = 10.0) -> None:
        self.pid = pid
        self._commands: int | None = commands  # the wake pipe's writing end (non-blocking)
        self._reports: int | None = reports  # the reports pipe's reading end, until the event loop's transport owns it
        self._stop_seconds = stop_seconds
        self._listening: asyncio.Task[None] | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._stopping = False
        self._woken_at = -math.inf  # the event loop's time of the last wake written
        self._trailing_wake: asyncio.TimerHandle | None = None
        self._exit_status: int | None = None

    @classmethod
    def fork(cls, config: QualityBridgeConfig) -> RelayProcess | None:
        """Fork the worker. Call before the process has threads or an event loop (the child runs on with the
        parent's memory as it was). None where the platform cannot fork: the server relays itself."""
        if not hasattr(os, "fork"):  # pragma: no cover - Windows
            _log.info("this platform cannot fork: the outbox relay runs in the server's process")
            return None
        commands_read, commands_write = os.pipe()
        reports_read, reports_write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:  # no memory or process slot for it: relay here rather than not at all
            for fd in (commands_read, commands_write, reports_read, reports_write):
                os.close(fd)
            _log.warning("could not fork the outbox relay's process (%s): the server relays in its own process", exc)
            return None
        if pid == 0:  # pragma: no cover - the child's lines run in the child, which coverage does not follow
            os.close(commands_write)
            os.close(reports_read)
            _work_and_exit(config, commands_read, reports_write)
        os.close(commands_read)
        os.close(reports_write)
        os.set_blocking(commands_write, False)
        return cls(pid, commands_write, reports_read)

    @property
    def running(self) -> bool:
        return self._listening is not None and not self._listening.done()

    async def start(self, events: EventBus, diagnostics: Diagnostics, on_lost: Callable[[], None]) -> None:
        """Tell the worker to open the store and relay; publish what it reports. `on_lost` is called should the
        worker end while the server still runs."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_REPORT_LINE_LIMIT)
        if self._reports is None:
            raise RuntimeError("a relay process is started once, and not after its stop")
        reports, self._reports = os.fdopen(self._reports, "rb", 0), None  # closed by the transport from here on
        self._transport, _protocol = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), reports)
        self._send(_START)
        self._listening = asyncio.create_task(
            self._listen(reader, events, diagnostics, on_lost), name="outbox-relay-process"
        )
        _log.info("outbox relay running in its own process (pid %d)", self.pid)

    def wake(self) -> None:
        """Something owed to the ERP was stored: deliver soon. Wakes that come close together are sent as one, at
        most `WAKE_SPACING_SECONDS` late (a round under way may have read its page before this posting was stored,
        so the last wake of a busy moment is never dropped). Never blocks: a full pipe holds a wake already."""
        if self._trailing_wake is not None:
            return  # a wake is due shortly and covers this one
        loop = asyncio.get_running_loop()
        wait = self._woken_at + WAKE_SPACING_SECONDS - loop.time()
        if wait > 0:
            self._trailing_wake = loop.call_later(wait, self._wake_now)
        else:
            self._wake_now()

    def _wake_now(self) -> None:
        self._trailing_wake = None
        self._woken_at = asyncio.get_running_loop().time()
        self._send(_WAKE)

    def _send(self, command: bytes) -> None:
        if self._commands is None:
            return
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._commands, command)

    async def _listen(
        self, reader: asyncio.StreamReader, events: EventBus, diagnostics: Diagnostics, on_lost: Callable[[], None]
    ) -> None:
        try:
            while line := await reader.readline():
                try:
                    report = decode_report(line)
                except ValueError as exc:
                    _log.error("%s", exc)
                    continue
                if isinstance(report, tuple):
                    diagnostics.outbox_depth, diagnostics.outbox_dead_letters, diagnostics.outbox_oldest_at = report
                    await diagnostics.changed()
                else:
                    await events.publish(report)
            # The worker closed its end: it exited (or is exiting).
        except Exception:
            # Unheard, the worker would block on its next report and relay no more: it goes, and the server relays.
            _log.exception("reading the outbox relay process's reports failed; it is stopped")
            self._kill()
        status = await self._reaped(self._stop_seconds)
        if not self._stopping:
            _log.error(
                "the outbox relay's own process (pid %d) ended (%s); the server relays in its own process from now on",
                self.pid,
                _describe(status),
            )
            self._close_commands()
            on_lost()

    async def stop(self) -> None:
        """Let the worker end its round and record its deliveries, then reap it; kill it after `stop_seconds`."""
        self._stopping = True
        self._close_commands()  # the worker's end of the wake pipe reads end-of-file: it stops soon
        if self._listening is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._listening), self._stop_seconds)
        # Not started: the worker reads end-of-file where it waited for `start`, and leaves at once.
        if await self._reaped(self._stop_seconds if self._listening is None else 0) is None:
            _log.warning("the outbox relay's process (pid %d) did not stop in time: killed", self.pid)
            self._kill()
            await self._reaped(self._stop_seconds)
        if self._listening is not None and not self._listening.done():
            self._listening.cancel()
            await asyncio.gather(self._listening, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()
        if self._reports is not None:  # never handed to the event loop (stopped before start)
            os.close(self._reports)
            self._reports = None

    def _kill(self) -> None:
        if self.pid == os.getpid():  # a worker run in this very process (the tests'): nothing to kill
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def _close_commands(self) -> None:
        if self._trailing_wake is not None:
            self._trailing_wake.cancel()
            self._trailing_wake = None
        if self._commands is not None:
            os.close(self._commands)
            self._commands = None

    async def _reaped(self, within_seconds: float) -> int | None:
        """The worker's wait status once it has exited (waiting up to `within_seconds`), else None."""
        deadline = time.monotonic() + within_seconds
        while self._exit_status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG: never blocks
            except ChildProcessError:  # reaped elsewhere (a child watcher): gone all the same
                self._exit_status = 0
                break
            if pid:
                self._exit_status = status
                break
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.02)
        return self._exit_status


def _describe(status: int | None) -> str:
    if status is None:
        return "still running"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def outbox_relay_for(
    config: QualityBridgeConfig,
    store: Store,
    erp: ErpClient,
    diagnostics: Diagnostics,
    events: EventBus,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> OutboxRelay:
    """The relay as `[erp]` configures it, for the server's process and the relay's own alike."""
    return OutboxRelay(
        store,
        erp,
        diagnostics,
        interval_seconds=config.erp.relay_interval_seconds,
        max_attempts=config.erp.relay_max_attempts,
        backoff_max_seconds=config.erp.relay_backoff_max_seconds,
        clock=clock,
        events=events,
    )


# ---- the worker's side ---------------------------------------------------------------------------------------


class _Reporter:
    """The worker's publisher: every event the server needs to hear of goes down the reports pipe."""

    def __init__(self, reports: int) -> None:
        self._reports = reports
        self.on_server_gone: Callable[[], None] = lambda: None

    async def publish(self, event: DomainEvent) -> None:
        line = encode_report(event)
        if line is None:
            return
        try:
            # Blocking on purpose: a server that reads slowly slows the relay rather than losing its reports.
            os.write(self._reports, line)
        except BrokenPipeError:
            self.on_server_gone()  # nobody to tell: the round under way ends, and the relay with it


def _work_and_exit(config: QualityBridgeConfig, commands: int, reports: int) -> NoReturn:  # pragma: no cover
    """The forked child's whole life: relay until told to stop, then leave without running the parent's exit
    handlers (they belong to the server's process: its coverage, its temporary files)."""
    # The server decides when its relay stops (it closes the wake pipe, or dies, and this process reads end-of-file):
    # Ctrl+C and a service manager's SIGTERM reach the whole process group, and ending here before the server would
    # read to it as a lost relay. SIGKILL still ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Its name in top, ps -o comm and the kernel's messages (an OOM kill names it), beside the server's "qualitybridge".
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(PROCESS_NAME)
    code = 0
    try:
        asyncio.run(relay_until_stopped(config, commands, reports))
    except BaseException:
        _log.exception("the outbox relay's process failed")
        code = 1
    finally:
        logging.shutdown()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


async def relay_until_stopped(config: QualityBridgeConfig, commands: int, reports: int) -> None:
    """The worker: wait for `start`, then relay as the server's relay would until the wake pipe ends. Takes both
    pipe ends (`commands` to read, `reports` to write) and closes them."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        transport, _protocol = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(commands, "rb", 0)
        )
    except BaseException:
        os.close(reports)
        raise
    try:
        if await reader.read(1) == _START:  # else the server stopped before it started its relay
            async with _one_relay_at_a_time(config.data_dir / RELAY_LOCK_FILE):
                await _relay(config, reader, reports)
    finally:
        transport.close()
        os.close(reports)


async def _relay(config: QualityBridgeConfig, reader: asyncio.StreamReader, reports: int) -> None:
    store = await open_store_waiting(
        config.store_url,
        sqlite_synchronous=config.store.sqlite_synchronous,
        wait_seconds=config.store.connect_wait_seconds,
    )
    erp = erp_client_for(config.erp, config.qms)
    try:
        events = EventBus()
        reporter = _Reporter(reports)
        events.add_publisher(reporter)
        relay = outbox_relay_for(config, store, erp, Diagnostics(events=events), events)
        reporter.on_server_gone = relay.stop_soon
        relay.wake()  # deliver what a previous run left in the outbox
        relaying = asyncio.create_task(relay.run_forever(), name="outbox-relay")
        listening = asyncio.create_task(_follow_commands(reader, relay), name="outbox-relay-commands")
        try:
            await relaying
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
    finally:
        await erp.aclose()
        await store.aclose()


@contextlib.asynccontextmanager
async def _one_relay_at_a_time(path: Path) -> AsyncIterator[None]:
    """`path` held locked while the block runs (the kernel lets go when the process ends, however it ends).

    A server killed outright leaves its relay process to end its round; a server started meanwhile on the same data
    folder forks a new one. Both would post the same pending postings (the ERP's idempotency keys absorb the
    repeats, but the ERP sees them): the new one waits here for the old one to be gone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _log.warning("another relay process holds %s (a previous server's, ending its round): waiting for it", path)
        try:
            await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        except BaseException:
            os.close(lock)
            raise
        _log.info("the previous relay process is gone: relaying")
    try:
        yield
    finally:
        os.close(lock)  # lets the next relay process go


async def _follow_commands(reader: asyncio.StreamReader, relay: OutboxRelay) -> None:
    while chunk := await reader.read(4096):
        if _WAKE in chunk:
            relay.wake()
    relay.stop_soon()  # end of file: the server stops, or is gone
