"""Start and stop as a plant meets them: every way a start can fail is one line naming the cause and the setting,
SIGTERM at any moment of the start leaves no traceback, and what holds secrets is readable by the owner only."""

from __future__ import annotations

import os
import random
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import CliRun, Deployment, cpu_ticks, free_port, invoke_cli, unmeasured_environment

pytestmark = pytest.mark.slow

POSTGRES_URL = os.environ.get("QB_TEST_POSTGRES_URL", "")


def qualitybridge(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`qualitybridge ARGS` as a process of its own: for the starts that fail on a PostgreSQL store, whose
    connection attempts are cleaned up (or not) as the interpreter exits, which is part of "one line, no
    traceback". Starts refused before any store or loop exists (a busy port, a config that is not UTF-8, a store
    path that is a folder) run in-process through invoke_cli: the same entry function, exit code and stderr,
    without an interpreter and its imports each (~2.5 CPU-s under coverage)."""
    return subprocess.run(
        [sys.executable, "-m", "qualitybridge", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "qualitybridge.toml"
    path.write_text('data_dir = "data"\n' + text, encoding="utf-8")
    return path


def one_line(completed: subprocess.CompletedProcess[str] | CliRun) -> str:
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    return lines[0]


@pytest.mark.parametrize("section", ["server", "operations"])
def test_busy_port_is_one_line_naming_port_and_setting_before_anything_is_created(tmp_path: Path, section: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        busy = holder.getsockname()[1]
        opcua_port = busy if section == "server" else free_port()
        config = write_config(
            tmp_path,
            f'[server]\nhost = "127.0.0.1"\nport = {opcua_port}\n'
            f"[operations]\nenabled = true\nport = {busy if section == 'operations' else free_port()}\n",
        )
        completed = invoke_cli("serve", "--config", str(config))
    assert completed.returncode == 2
    line = one_line(completed)
    assert f"port {busy}" in line
    assert f"[{section}] port" in line
    assert str(config) in line
    assert not (tmp_path / "data").exists(), "no certificate, store or folder before the port check"


def test_config_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "qualitybridge.toml"
    config.write_bytes('data_dir = "Qualität"\n'.encode("latin-1"))
    completed = invoke_cli("serve", "--config", str(config))
    assert completed.returncode == 2
    assert "not UTF-8" in one_line(completed)


def test_store_path_that_is_a_folder_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    config = write_config(
        tmp_path, f'[server]\nhost = "127.0.0.1"\nport = {free_port()}\n[store]\nurl = "sqlite+aiosqlite:///{folder}"\n'
    )
    completed = invoke_cli("serve", "--config", str(config))
    assert completed.returncode == 2
    assert f"{folder} is a folder" in one_line(completed)


def test_store_not_up_is_retried_naming_the_store_then_one_line(tmp_path: Path) -> None:
    nobody_port = free_port()  # nothing listens here
    config = write_config(
        tmp_path,
        f'[server]\nhost = "127.0.0.1"\nport = {free_port()}\n'
        f'[store]\nurl = "postgresql+asyncpg://qb:s3cret-pw@127.0.0.1:{nobody_port}/plant"\nconnect_wait_seconds = 3\n',
    )
    started = time.monotonic()
    completed = qualitybridge("serve", "--config", str(config))
    assert completed.returncode == 1
    assert time.monotonic() - started >= 3
    assert "Traceback" not in completed.stderr
    assert "s3cret-pw" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    retries = [line for line in lines if "retrying in" in line]
    assert len(retries) >= 1
    assert f"PostgreSQL at 127.0.0.1:{nobody_port}/plant as qb not reachable" in retries[0]
    assert lines[-1].startswith("qualitybridge: store: ")
    assert "gave up after 3 s" in lines[-1]


@pytest.mark.postgres
@pytest.mark.parametrize("missing", ["database", "user"])
def test_database_or_user_that_does_not_exist_is_one_line(tmp_path: Path, missing: str) -> None:
    if not POSTGRES_URL:
        pytest.skip("needs QB_TEST_POSTGRES_URL")
    head, database = POSTGRES_URL.rsplit("/", 1)
    if missing == "database":
        url, expected = f"{head}/qb_no_such_database", "database 'qb_no_such_database' does not exist"
    else:
        scheme, address = head.split("://", 1)
        url = f"{scheme}://qb_no_such_user@{address.rsplit('@', 1)[-1]}/{database}"
        expected = "refused the login"
    config = write_config(tmp_path, f'[server]\nhost = "127.0.0.1"\nport = {free_port()}\n[store]\nurl = "{url}"\n')
    completed = qualitybridge("serve", "--config", str(config))
    assert completed.returncode == 2
    assert expected in one_line(completed)


def test_admin_command_refuses_a_data_folder_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "not-here"
    completed = invoke_cli("users", "list", "--data-dir", str(missing))
    assert completed.returncode == 2
    assert "does not exist" in one_line(completed)
    assert not missing.exists()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("start-stop")
    # Started afresh, not forked (tests/fork_server.py): the SIGTERM test spreads its moments over a whole start's
    # CPU, imports included, which is what its ready_ticks measure here.
    deployment = Deployment(
        root, "sqlite", f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}", forked_starts=False
    )
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def test_files_holding_secrets_are_owner_only(deployment: Deployment) -> None:
    data = deployment.data_dir
    secrets = [data / "qualitybridge.db", *(data / "pki").rglob("*.pem")]
    secrets += list(data.glob("qualitybridge.db-*"))  # SQLite's -wal and -shm
    assert len(secrets) >= 2
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def _sigterm_when_cpu_reaches(command: list[str], ticks: int) -> tuple[subprocess.CompletedProcess[str], int]:
    """Starts `command`, sends SIGTERM once the process has used `ticks` clock ticks of CPU (or has printed its
    ready line, or has ended); answers how it ended and the ticks it had used when the signal went out."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=unmeasured_environment())
        used = 0
        while process.poll() is None:
            used = cpu_ticks(process.pid)
            out.seek(0)
            if used >= ticks or "QualityBridge ready" in out.read():
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(command, process.returncode, out.read(), err.read()), used


def test_sigterm_at_moments_spread_over_the_start_leaves_no_traceback(deployment: Deployment) -> None:
    """SIGTERM at any moment of a start: the moments are spread over the CPU work a start does (its imports, the
    store, the address space, the first ERP sync, just after ready), one random moment in each of MOMENTS equal
    slices, so every start tests a different phase whatever the machine's load (wall-clock moments on a busy
    machine bunch up in whichever phase runs when the others let it)."""
    assert deployment.server is not None
    start_ticks = deployment.server.ready_ticks  # its start, with the same configuration
    assert start_ticks > 0
    deployment.server.stop()  # the deployment's simulator, users and certificates stay; the server restarts below
    command = [sys.executable, "-m", "qualitybridge", "serve", "--config", str(deployment.config_path)]
    moments = 6
    first, last = 0.25, 1.05  # of a start's CPU: before 0.25 Python is still importing, after 1 it is serving
    slice_width = (last - first) / moments
    rng = random.Random(16)
    outcomes = []
    for index in range(moments):
        fraction = first + slice_width * (index + rng.random())
        completed, used = _sigterm_when_cpu_reaches(command, round(fraction * start_ticks))
        had_started = "QualityBridge ready" in completed.stdout
        outcomes.append((round(fraction, 2), used, completed.returncode, had_started))
        assert "Traceback" not in completed.stderr, f"SIGTERM at {used} ticks of CPU:\n{completed.stderr}"
        assert completed.returncode in (0, -signal.SIGTERM), f"SIGTERM at {used} ticks: {completed.returncode}"
    print(f"a start: {start_ticks} ticks of CPU; SIGTERM at (fraction, ticks, exit code, had started): {outcomes}")


def test_a_deployment_whose_start_fails_leaves_no_process_behind(tmp_path: Path) -> None:
    """The test harness (and the bench, which uses it) stops what it started when a later step of the start fails:
    here the simulator, started first, when a certificate to trust does not exist."""
    root = tmp_path / "deployment"
    deployment = Deployment(
        root,
        "sqlite",
        f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}",
        trusted_certificates=[tmp_path / "no-such-certificate.der"],
    )
    with pytest.raises(AssertionError, match="pki trust"):
        deployment.start()
    assert deployment.simulator is not None
    assert deployment.simulator.process is not None
    assert deployment.simulator.process.poll() is not None, "the simulator is still running"
    assert deployment.server is None
