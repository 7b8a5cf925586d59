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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Deployment, free_port

pytestmark = pytest.mark.slow

POSTGRES_URL = os.environ.get("QB_TEST_POSTGRES_URL", "")


def qualitybridge(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qualitybridge", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "qualitybridge.toml"
    path.write_text('data_dir = "data"\n' + text, encoding="utf-8")
    return path


def one_line(completed: subprocess.CompletedProcess[str]) -> str:
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
        completed = qualitybridge("serve", "--config", str(config))
    assert completed.returncode == 2
    line = one_line(completed)
    assert f"port {busy}" in line
    assert f"[{section}] port" in line
    assert str(config) in line
    assert not (tmp_path / "data").exists(), "no certificate, store or folder before the port check"


def test_config_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "qualitybridge.toml"
    config.write_bytes('data_dir = "Qualität"\n'.encode("latin-1"))
    completed = qualitybridge("serve", "--config", str(config))
    assert completed.returncode == 2
    assert "not UTF-8" in one_line(completed)


def test_store_path_that_is_a_folder_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    config = write_config(
        tmp_path, f'[server]\nhost = "127.0.0.1"\nport = {free_port()}\n[store]\nurl = "sqlite+aiosqlite:///{folder}"\n'
    )
    completed = qualitybridge("serve", "--config", str(config))
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
    completed = qualitybridge("users", "list", "--data-dir", str(missing))
    assert completed.returncode == 2
    assert "does not exist" in one_line(completed)
    assert not missing.exists()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("start-stop")
    deployment = Deployment(root, "sqlite", f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}")
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


def test_sigterm_at_random_moments_during_start_leaves_no_traceback(deployment: Deployment) -> None:
    assert deployment.server is not None
    deployment.server.stop()  # the deployment's simulator, users and certificates stay; the server restarts below
    command = [sys.executable, "-m", "qualitybridge", "serve", "--config", str(deployment.config_path)]
    # How long a start takes here (imports included), so that the moments fall into the start, not after it.
    launched = time.monotonic()
    probe = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert probe.stdout is not None
    assert "QualityBridge ready" in probe.stdout.readline()
    ready_after = time.monotonic() - launched
    probe.send_signal(signal.SIGTERM)
    assert "Traceback" not in probe.communicate(timeout=30)[1]
    rng = random.Random(16)
    moments = sorted(rng.uniform(0.3 * ready_after, 1.1 * ready_after) for _ in range(10))
    outcomes = []
    for moment in moments:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(moment)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
        outcomes.append((moment, process.returncode, "ready" in stdout))
        assert "Traceback" not in stderr, f"SIGTERM after {moment:.2f} s:\n{stderr}"
        assert process.returncode in (0, -signal.SIGTERM), f"SIGTERM after {moment:.2f} s: {process.returncode}"
    print(f"start to ready: {ready_after:.1f} s; SIGTERM moments (s, exit code, had started):")
    print([(round(m, 2), rc, up) for m, rc, up in outcomes])
