"""Running the real thing for end-to-end tests: simulator and server as processes, a real OPC UA client.

Nothing here fakes a boundary: the server is `qualitybridge serve` (or `demo`) in a child process on a
loopback port, the ERP is `qualitybridge simulator` over HTTP, the client is asyncua over SignAndEncrypt.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import io
import json
import logging
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

import asyncpg
import httpx
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from qualitybridge.config import LimitsSettings
from qualitybridge.server.address_space.standard_nodes import default_cache_dir
from qualitybridge.server.limits import LimitedServer
from qualitybridge.server.pki import make_self_signed_certificate
from qualitybridge.server.security.identity import Role

# The PostgreSQL server the store tests and PostgreSQL deployments use; without it they are skipped with the reason.
POSTGRES_URL = os.environ.get("QB_TEST_POSTGRES_URL", "")
POSTGRES_SKIP_REASON = (
    "PostgreSQL store tests need QB_TEST_POSTGRES_URL, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test "
    "(.ci/run sets it when that server answers)"
)

NAMESPACE_URI = "https://qualitybridge.dev/UA/"
CLIENT_URI = "urn:qualitybridge:test-client"
STARTUP_TIMEOUT = 60.0  # without progress: see ChildProcess.wait_ready
STARTUP_LIMIT = 600.0
ORDER_RUNNING = 3  # OrderStateEnum Running
WATCHDOG_SECONDS = 4.0  # see secure_session


# Ports for servers the tests start. Asking the kernel for port 0 and closing it races between parallel workers
# (pytest-xdist) and with outgoing connections, which draw from the same ephemeral range (32768-60999 on Linux).
# So each worker takes ports from a block of its own below that range, starting at a random place in the block
# (other checkouts on the same machine run the same code), skipping ports that are taken; Deployment.start
# retries with new ports should one be taken between here and the server's bind all the same.
PORT_BLOCK_BASE = 20000
PORT_BLOCK_SIZE = 1000
_port_cursor: list[int] = []


def _port_block() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...; absent without xdist
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    start = PORT_BLOCK_BASE + (index % 12) * PORT_BLOCK_SIZE  # 12 blocks end at 32000, below the ephemeral range
    return range(start, start + PORT_BLOCK_SIZE)


def free_port() -> int:
    block = _port_block()
    if not _port_cursor:
        _port_cursor.append(random.randrange(len(block)))  # spreads checkouts over the block
    for _ in range(len(block)):
        port = block[_port_cursor[0] % len(block)]
        _port_cursor[0] += 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {block.start}-{block.stop - 1}")


def address_in_use(logs: str) -> bool:
    """Whether a child process failed because its port was taken (EADDRINUSE), a case for new ports, not a bug."""
    return "[Errno 98]" in logs or "address already in use" in logs.lower()


def wait_for(
    predicate: Any,
    timeout: float,
    what: str,
    interval: float = 0.1,
    progress: Any = None,
    at_most: float | None = None,
) -> Any:
    """Polls `predicate` until it is truthy; gives up after `timeout` s.

    With `progress` (a callable returning e.g. a count), the timeout counts from the last time its value changed:
    work that keeps moving on a busy machine is waited for, work that has stopped still fails after `timeout`.
    `at_most` then bounds the whole wait, for work that moves without ever getting there.
    """
    started = time.monotonic()
    deadline = started + timeout
    last = progress() if progress is not None else None
    while True:
        value = predicate()
        if value:
            return value
        if progress is not None and (now := progress()) != last:
            last, deadline = now, time.monotonic() + timeout
        if at_most is not None:
            deadline = min(deadline, started + at_most)
        if time.monotonic() > deadline:
            stalled = " without progress" if progress is not None else ""
            raise TimeoutError(f"gave up after {time.monotonic() - started:.0f} s{stalled} waiting for {what}")
        time.sleep(interval)


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, seconds: float = 20.0, interval: float = 0.05
) -> None:
    """`wait_for` for a test's event loop: polls `condition` (a bool, or an awaitable of one, when what it asks
    runs in the same loop) without blocking the loop; AssertionError naming `what` after `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        met = condition()
        if not isinstance(met, bool):
            met = await met
        if met:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(interval)


# Set by coverage's subprocess patch (pyproject.toml, [tool.coverage.run] patch) for every Python process a test
# starts, so that its code is measured too.
COVERAGE_CHILD_VARIABLE = "COVERAGE_PROCESS_CONFIG"
MEASURED_AFTER_START = Path(__file__).resolve().parent / "measured_after_start.py"


async def standard_server(limits: LimitsSettings | None = None) -> LimitedServer:
    """An in-process OPC UA server as `qualitybridge serve` builds it (LimitedServer, default `[limits]` unless
    given), initialised, not started: its standard address space (namespace 0) comes from the cache the suite's
    server processes use too (`default_cache_dir()`), each node made when first reached, instead of asyncua's fill
    at every init (4-6 s of CPU under coverage each; test_standard_nodes shows the two are the same node for node)."""
    server = LimitedServer(limits or LimitsSettings(), standard_nodes_cache=default_cache_dir())
    await server.init()
    return server


def unmeasured_environment() -> dict[str, str]:
    """The environment for a Python process coverage does not trace at all: a server that is stopped during its
    start, over and over (what a start runs, the integration tier measures in-process)."""
    return {name: value for name, value in os.environ.items() if name != COVERAGE_CHILD_VARIABLE}


def long_running_command(args: list[str], ready_text: str) -> tuple[list[str], dict[str, str]]:
    """Command and environment for `qualitybridge ARGS` as a long-running process (server, simulator, demo).

    Under coverage, through tests/measured_after_start.py: what the process does once ready is measured, its start
    is not (tracing doubled a start's CPU, about half of the suite's; see that module).
    """
    environment = unmeasured_environment()
    coverage_config = os.environ.get(COVERAGE_CHILD_VARIABLE)
    if coverage_config is None:
        return [sys.executable, "-m", "qualitybridge", *args], environment
    from tests.measured_after_start import DEFERRED_VARIABLE

    environment[DEFERRED_VARIABLE] = coverage_config
    return [sys.executable, str(MEASURED_AFTER_START), ready_text, *args], environment


def cpu_ticks(pid: int) -> int:
    """CPU time a process has used so far (user + system, in clock ticks); 0 once it is gone or off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15 of proc(5)


class ForkedProcess:
    """A process tests/fork_server.py forked for this one, as much of subprocess.Popen as ChildProcess and the tests
    use. It is this process's child by re-parenting (this process is a subreaper), so it is waited for here: its
    exit status, and its CPU in getrusage(RUSAGE_CHILDREN), as for a process started with Popen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"forked process {self.pid}", timeout or 0)
            time.sleep(0.01)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_PR_SET_CHILD_SUBREAPER = 36  # prctl(2)
_fork_server_lock = threading.Lock()
_fork_servers: list[subprocess.Popen[bytes]] = []


def _fork_server() -> subprocess.Popen[bytes]:
    """tests/fork_server.py for this test process, started at its first use (call with _fork_server_lock held)."""
    if not _fork_servers:
        import ctypes

        if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.fork_server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=unmeasured_environment(),
            cwd=Path(__file__).resolve().parents[1],
        )
        _fork_servers.append(server)

        def stop() -> None:
            assert server.stdin is not None
            server.stdin.close()  # it ends at the end of its requests
            server.wait(timeout=30)

        atexit.register(stop)
    return _fork_servers[0]


def forked(args: list[str], ready_text: str, env: dict[str, str], stdout: Path, stderr: Path) -> ForkedProcess:
    """`qualitybridge ARGS` in a process forked from the fork server (tests/fork_server.py), as `launch` runs it."""
    for path in (stdout, stderr):
        path.write_bytes(b"")  # there when this returns, as Popen's files are: the ready line is looked for in them
    request = {"args": args, "ready_text": ready_text, "env": env, "cwd": os.getcwd()}
    request |= {"stdout": str(stdout), "stderr": str(stderr)}
    with _fork_server_lock:
        server = _fork_server()
        assert server.stdin is not None
        assert server.stdout is not None
        server.stdin.write(json.dumps(request).encode() + b"\n")
        server.stdin.flush()
        answer = server.stdout.readline()
    if not answer:
        raise RuntimeError(f"the fork server ended (exit status {server.wait()})")
    return ForkedProcess(int(answer))


@dataclass
class ChildProcess:
    """A qualitybridge command running as a child process, its output in files for post-mortems.

    Forked from the fork server (tests/fork_server.py: its imports done once per test process instead of once per
    start) unless `forked` is false: a test that measures a whole start's CPU (test_start_stop) starts it afresh."""

    name: str
    args: list[str]
    log_dir: Path
    ready_text: str
    forked: bool = True
    process: subprocess.Popen[bytes] | ForkedProcess | None = None
    starts: int = 0
    # CPU time (clock ticks) the last start took until its ready line: where a test is in a start, whatever the load.
    ready_ticks: int = 0

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.out"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.err"

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        self.starts += 1
        command, env = long_running_command(self.args, self.ready_text)
        env["PYTHONUNBUFFERED"] = "1"
        if self.forked:
            self.process = forked(self.args, self.ready_text, env, self.stdout_path, self.stderr_path)
            return
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, env=env)

    def wait_ready(self) -> None:
        """Until the ready line: as long as the process keeps working (its CPU time grows), however slowly a machine
        busy with other work lets it; a process that does nothing for STARTUP_TIMEOUT s fails, as does one that is
        not ready after STARTUP_LIMIT s."""
        try:
            wait_for(
                self._ready,
                STARTUP_TIMEOUT,
                f"{self.name} to print {self.ready_text!r}",
                progress=self._work_done,
                at_most=STARTUP_LIMIT,
            )
        except TimeoutError:
            self.stop()
            raise
        self.ready_ticks = self._work_done()

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.logs()}")
        return self.ready_text in self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(
            errors="replace"
        )

    def _work_done(self) -> int:
        assert self.process is not None
        return cpu_ticks(self.process.pid)

    def logs(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")

    def kill_hard(self) -> None:
        """SIGKILL: no shutdown code runs, as when a plant PC loses power or the OOM killer strikes."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass(frozen=True)
class CliRun:
    """What a `qualitybridge` command did, as its process would have reported it."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _process_state_kept(cwd: Path | None) -> Iterator[None]:
    """Puts back what a command may change in its process and a process boundary used to throw away: the
    environment, the working directory, sys.argv, the logging set-up (setup_logging replaces the root handlers
    with force=True and sets library levels) and the SIGINT/SIGTERM handlers (closing a loop that installed
    stop signals resets them to the defaults)."""
    environment = dict(os.environ)
    folder = os.getcwd()
    argv = list(sys.argv)
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level
    levels = {
        name: (logger.level, logger.disabled, list(logger.handlers), logger.propagate)
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        os.environ.setdefault("COLUMNS", "80")  # help wraps as it does into a pipe, not to the test's terminal
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(folder)
        os.environ.clear()
        os.environ.update(environment)
        sys.argv[:] = argv
        for handler in root.handlers:
            if handler not in root_handlers:
                handler.close()
        root.handlers[:] = root_handlers
        root.setLevel(root_level)
        for name, logger in logging.Logger.manager.loggerDict.items():
            if isinstance(logger, logging.Logger):
                level, disabled, handlers, propagate = levels.get(name, (logging.NOTSET, False, [], True))
                logger.setLevel(level)
                logger.disabled, logger.handlers[:], logger.propagate = disabled, handlers, propagate
        if threading.current_thread() is threading.main_thread():
            for sig, handler in signals.items():
                if handler is not None:
                    signal.signal(sig, handler)


def _exit_code(exc: SystemExit, errors: TextIO) -> int:
    """The exit status the interpreter would give SystemExit(code): None is 0, a message is printed and 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=errors)
    return 1


def invoke_cli(*args: str, cwd: Path | None = None, stdin: str = "") -> CliRun:
    """`qualitybridge ARGS` in this process, through the console script's own entry function (qualitybridge.cli.main).

    The same code path as typing the command (parser, exit codes, what it prints) without an interpreter and its
    imports per command (about 1.5 s of CPU each, 2.5 s under coverage). Output, exit status (SystemExit included)
    and an uncaught exception's traceback come back as a process would give them; the process state a command may
    change is put back afterwards (_process_state_kept). A command needs an event loop of its own (asyncio.run),
    so called from a running loop it runs in a thread. What depends on a process of its own (signals, a server's
    lifetime, the installed entry point) stays in run_cli_process.
    """
    if _loop_running():
        done: list[CliRun] = []
        worker = threading.Thread(target=lambda: done.append(invoke_cli(*args, cwd=cwd, stdin=stdin)))
        worker.start()
        worker.join()
        return done[0]
    from qualitybridge.cli import main

    output, errors = io.StringIO(), io.StringIO()
    with (
        _process_state_kept(cwd),
        contextlib.redirect_stdout(output),
        contextlib.redirect_stderr(errors),
        _stdin_from(stdin),
    ):
        sys.argv[:] = ["qualitybridge", *args]
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = _exit_code(exc, errors)
        except Exception:  # an uncaught exception: exit status 1 and the traceback on stderr, as a process
            traceback.print_exc(file=errors)
            code = 1
    return CliRun(code, output.getvalue(), errors.getvalue())


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@contextlib.contextmanager
def _stdin_from(text: str) -> Iterator[None]:
    saved = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = saved


def run_cli(*args: str) -> str:
    """A `qualitybridge` command that must succeed (in-process, invoke_cli); its standard output."""
    completed = invoke_cli(*args)
    assert completed.returncode == 0, f"qualitybridge {' '.join(args)} failed:\n{completed.stdout}{completed.stderr}"
    return completed.stdout


def run_cli_commands(commands: list[list[str]]) -> None:
    """Several `qualitybridge` commands that must succeed, in order (in-process, invoke_cli)."""
    for args in commands:
        run_cli(*args)


def run_cli_process(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`qualitybridge ARGS` as a process of its own: for what the process boundary is part of (the installed entry
    point, an exit status at start, signals, environment). Everything else goes through invoke_cli."""
    return subprocess.run(
        [sys.executable, "-m", "qualitybridge", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


@dataclass
class ClientCertificate:
    cert: Path
    key: Path
    uri: str = CLIENT_URI


def make_client_certificate(folder: Path, uri: str = CLIENT_URI) -> ClientCertificate:
    folder.mkdir(parents=True, exist_ok=True)
    certificate, key = make_self_signed_certificate(uri, "QualityBridge test client", ["localhost"])
    (folder / "client.der").write_bytes(certificate)
    (folder / "client.pem").write_bytes(key)
    return ClientCertificate(folder / "client.der", folder / "client.pem", uri)


TEST_USERS = {
    "machine1": (Role.MACHINE, "machine1-secret"),
    "observer": (Role.OBSERVER, "observer-secret"),
    "quality": (Role.QUALITY_ENGINEER, "quality-secret"),
}


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'qualitybridge.db'}"


@functools.cache
def _prepared_data() -> Path:
    """A data folder with the TEST_USERS and a trusted client certificate, set up once per test process through
    the CLI, as `Deployment.start` did for each deployment: copying it costs a file copy instead of an interpreter
    with the whole CLI imported (several CPU seconds under coverage). The server still creates its own certificate
    on its first start in each copy, as on a plant's first start."""
    root = Path(tempfile.mkdtemp(prefix="qb-prepared-data-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    config_path = root / "qualitybridge.toml"
    config_path.write_text(f'data_dir = "data"\n[store]\nurl = "{sqlite_url(root / "data")}"\n', encoding="utf-8")
    config = ["--config", str(config_path)]
    commands = [
        ["users", "add", name, "--role", role.value, "--password", password, *config]
        for name, (role, password) in TEST_USERS.items()
    ]
    certificate = make_client_certificate(root / "client")
    commands.append(["pki", "trust", str(certificate.cert), *config])
    run_cli_commands(commands)
    return root


def copy_prepared_data(root: Path) -> ClientCertificate:
    """`root`/data as the CLI sets it up for TEST_USERS (SQLite store, trust list) and the trusted client's
    certificate in `root`/client; modes are kept (the store and keys are the owner's only)."""
    prepared = _prepared_data()
    shutil.copytree(prepared / "data", root / "data")
    shutil.copytree(prepared / "client", root / "client")
    return ClientCertificate(root / "client" / "client.der", root / "client" / "client.pem")


@dataclass
class Deployment:
    """Simulator + server on loopback ports, with users and a trusted client certificate."""

    root: Path
    backend: str
    store_url: str
    erp_port: int = field(default_factory=free_port)
    opcua_port: int = field(default_factory=free_port)
    # More users than TEST_USERS for one module: name -> (role, password, work centres the user is restricted to).
    extra_users: dict[str, tuple[Role, str, tuple[str, ...]]] = field(default_factory=dict)
    simulator: ChildProcess | None = None
    server: ChildProcess | None = None
    client_certificate: ClientCertificate | None = None
    # Appended to the generated TOML, e.g. a [limits] section with low values for a test.
    extra_config: str = ""
    # More client certificates (DER files) to trust before the server starts, beside the test client's.
    trusted_certificates: list[Path] = field(default_factory=list)
    # Server and simulator forked from the fork server (ChildProcess.forked), or started afresh.
    forked_starts: bool = True

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def config_path(self) -> Path:
        return self.root / "qualitybridge.toml"

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.opcua_port}/qualitybridge"

    @property
    def erp_url(self) -> str:
        return f"http://127.0.0.1:{self.erp_port}"

    def write_config(self) -> None:
        self.config_path.write_text(
            f"""
data_dir = "data"
log_level = "INFO"

[server]
host = "127.0.0.1"
port = {self.opcua_port}
hostname = "localhost"

[store]
url = "{self.store_url}"
sqlite_synchronous = "FULL"

[erp]
base_url = "{self.erp_url}"
sync_interval_seconds = 1
relay_interval_seconds = 0.5
timeout_seconds = 3
relay_backoff_max_seconds = 1
"""
            + self.extra_config,
            encoding="utf-8",
        )

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.simulator = ChildProcess(
            "simulator",
            ["simulator", "--port", str(self.erp_port)],
            self.root,
            "ERP/QMS simulator ready",
            self.forked_starts,
        )
        self.simulator.launch()  # starts up while the users and the trust list are set up
        try:
            self._prepare_and_start_server()
        except BaseException:
            # What started is stopped: a caller whose start failed has nothing to stop, and a forked simulator left
            # behind outlives the test process (the bench's failed starts left idle ones for an hour).
            self.stop()
            raise

    def _prepare_and_start_server(self) -> None:
        """Users, trust list and store ready (the prepared copy or the CLI), the simulator up, the server started."""
        assert self.simulator is not None
        config = ["--config", str(self.config_path)]
        commands: list[list[str]] = []
        if self._on_own_sqlite_file() and not self.data_dir.exists():
            self.client_certificate = copy_prepared_data(self.root)
        else:
            commands += [
                ["users", "add", name, "--role", role.value, "--password", password, *config]
                for name, (role, password) in TEST_USERS.items()
            ]
            self.client_certificate = make_client_certificate(self.root / "client")
            commands.append(["pki", "trust", str(self.client_certificate.cert), *config])
        for name, (role, password, work_centres) in self.extra_users.items():
            restriction = [f"--work-centre={work_centre}" for work_centre in work_centres]
            commands.append(["users", "add", name, "--role", role.value, "--password", password, *restriction, *config])
        commands += [["pki", "trust", str(certificate), *config] for certificate in self.trusted_certificates]
        if commands:
            run_cli_commands(commands)
        self._until_bound(self.simulator.wait_ready, self._new_erp_port)
        self.server = ChildProcess(
            "server", ["serve", "--config", str(self.config_path)], self.root, "QualityBridge ready", self.forked_starts
        )
        self._until_bound(self.server.start, self._new_opcua_port)

    def _on_own_sqlite_file(self) -> bool:
        return self.backend == "sqlite" and self.store_url == sqlite_url(self.data_dir)

    def _until_bound(self, start: Any, new_port: Any) -> None:
        """Runs `start`; should its port have been taken meanwhile (another worker, another checkout on this
        machine), moves to a new port and starts again, up to twice more."""
        for attempt in range(3):
            try:
                start()
                return
            except RuntimeError as error:
                if attempt == 2 or not address_in_use(str(error)):
                    raise
                new_port()

    def _new_erp_port(self) -> None:
        assert self.simulator is not None
        self.erp_port = free_port()
        self.simulator.args = ["simulator", "--port", str(self.erp_port)]
        self.write_config()
        self.simulator.launch()

    def _new_opcua_port(self) -> None:
        self.opcua_port = free_port()
        self.write_config()

    def stop(self) -> None:
        for child in (self.server, self.simulator):
            if child is not None:
                child.stop()

    def session(self, user: str = "machine1") -> contextlib.AbstractAsyncContextManager[Client]:
        assert self.client_certificate is not None
        password = TEST_USERS[user][1] if user in TEST_USERS else self.extra_users[user][1]
        return secure_session(self.endpoint, self.client_certificate, user, password)

    async def ensure_running(self, order_no: str) -> None:
        """Start the order (as the quality engineer) unless it runs already: reports need a Running order.

        Waits for the order to be published first (the server's first ERP sync may still be under way).
        """
        async with self.session("quality") as client:
            idx = await client.get_namespace_index(NAMESPACE_URI)
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while True:
                try:
                    state = await client.get_node(ua.NodeId(f"Order/{order_no}.State", idx)).read_value()
                    break
                except ua.uaerrors.BadNodeIdUnknown:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            if state != ORDER_RUNNING:
                bridge = client.get_node(ua.NodeId("QualityBridge", idx))
                assert await bridge.call_method(ua.NodeId("QualityBridge.StartOrder", idx), order_no) == ORDER_RUNNING

    def erp(self) -> httpx.Client:
        return httpx.Client(base_url=self.erp_url, timeout=10)

    async def stored_result_count(self) -> int:
        """Counted in the store itself, not through the server: what is on disk."""
        return await self._count("SELECT count(*) FROM measurement_results")

    async def pending_posting_count(self) -> int:
        """Postings the relay still owes the ERP, counted in the store."""
        return await self._count("SELECT count(*) FROM outbox WHERE state = 'pending'")

    async def _count(self, query: str) -> int:
        if self.backend == "sqlite":
            database = self.store_url.split("///", 1)[1]
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
                return int(connection.execute(query).fetchone()[0])
        connection = await asyncpg.connect(self.store_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return int(await connection.fetchval(query))
        finally:
            await connection.close()


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one deployment, dropped afterwards."""
    name = f"qb_e2e_{uuid.uuid4().hex[:10]}"
    plain = admin_url.replace("postgresql+asyncpg://", "postgresql://")

    async def execute(statement: str) -> None:
        connection = await asyncpg.connect(plain)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.asynccontextmanager
async def postgres_schema_engine(admin_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine whose search path is a fresh PostgreSQL schema of its own, dropped with everything in it afterwards."""
    schema = f"qb_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(admin_url)
    async with admin.begin() as conn:
        await conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine = create_async_engine(admin_url, connect_args={"server_settings": {"search_path": schema}})
    try:
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.dispose()


@contextlib.asynccontextmanager
async def secure_session(
    endpoint: str,
    certificate: ClientCertificate,
    user: str | None,
    password: str | None,
    request_timeout: float = 10,
    keepalive_probe_seconds: float = WATCHDOG_SECONDS,
) -> AsyncIterator[Client]:
    """A connected asyncua client: Basic256Sha256 SignAndEncrypt, with a user name and password.

    asyncua's watchdog reads the server state every `watchdog_intervall` s and drops the session when the read takes
    longer than that (1 s by default): on a machine busy with other work a healthy session was dropped, and every
    later test on it failed with "client is disconnected". WATCHDOG_SECONDS keeps the read inside half of the
    shortest session timeout a test configures (10 s), so the watchdog still keeps such sessions alive. A test that
    watches for dropped sessions itself passes its own `keepalive_probe_seconds`.
    """
    client = Client(endpoint, timeout=request_timeout, watchdog_intervall=keepalive_probe_seconds)
    client.application_uri = certificate.uri
    if user is not None:
        client.set_user(user)
    if password is not None:
        client.set_password(password)
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        str(certificate.cert),
        str(certificate.key),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    await client.connect()
    try:
        yield client
    finally:
        await client.disconnect()


def deployed(backend: str, root: Path, **options: Any) -> Iterator[Deployment]:
    """Simulator + server on `backend` ("sqlite" or "postgresql") for a fixture to yield from; stopped afterwards.

    PostgreSQL gets a database of its own, dropped afterwards; without QB_TEST_POSTGRES_URL the test is skipped
    with the reason.
    """
    import pytest

    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url = sqlite_url(root / "data")
        elif not POSTGRES_URL:
            pytest.skip(POSTGRES_SKIP_REASON)
        else:
            url = stack.enter_context(postgres_database(POSTGRES_URL))
        deployment = Deployment(root, backend, url, **options)
        stack.callback(deployment.stop)
        deployment.start()
        yield deployment


class ErpProxy:
    """An HTTP proxy in front of the simulator, for tests of an ERP that misbehaves: every request is forwarded,
    except those `answer` (overridden by a test's ERP) answers itself. Used as a context manager."""

    def __init__(self, simulator_url: str) -> None:
        self.port = free_port()
        self.simulator_url = simulator_url
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answered = proxy.answer(self.command, self.path, body, headers)
                if answered is None:
                    upstream = proxy.forward(self.command, self.path, body, headers)
                    answered = upstream.status_code, upstream.content
                status, content = answered
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815 - http.server's naming

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, command: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes] | None:
        """(status, JSON body) to answer instead of the simulator; None forwards the request unchanged."""
        return None

    def forward(self, command: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.request(command, self.simulator_url + path, content=body or None, headers=headers, timeout=10)

    def __enter__(self) -> ErpProxy:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class BehindProxy(Deployment):
    """A deployment whose server talks to an ErpProxy on `proxy_port`; the simulator runs on erp_port behind it."""

    proxy_port: int = 0

    @property
    def erp_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port or self.erp_port}"
