"""The command line as a subprocess: help that explains, a bad configuration refused at start, users and pki.

How configuration errors name the key and the fix is tested without a process in tests/unit/test_config.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def qualitybridge(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qualitybridge", *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


@pytest.mark.parametrize("command", [[], ["serve"], ["demo"], ["simulator"], ["pki"], ["users"]])
def test_help_explains_each_command(command: list[str]) -> None:
    completed = qualitybridge(*command, "--help")
    assert completed.returncode == 0
    assert "usage: qualitybridge" in completed.stdout
    assert len(completed.stdout.splitlines()) > 5


def test_top_level_help_lists_commands_and_examples() -> None:
    text = qualitybridge("--help").stdout
    for word in ("serve", "demo", "simulator", "pki", "users", "examples:", "docs/configuration.md"):
        assert word in text


def test_serve_with_a_bad_config_exits_2_before_opening_a_port(tmp_path: Path) -> None:
    config = tmp_path / "qualitybridge.toml"
    config.write_text("[server]\nport = 0\n", encoding="utf-8")
    completed = qualitybridge("serve", "--config", str(config))
    assert completed.returncode == 2
    assert "server.port" in completed.stderr


def test_users_add_list_and_refuse_a_short_password(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()  # admin commands refuse a data folder that does not exist
    data = str(tmp_path / "data")
    assert (
        qualitybridge(
            "users",
            "add",
            "m7",
            "--role",
            "Machine",
            "--password",
            "long-enough",
            "--work-centre",
            "WC-1",
            "--data-dir",
            data,
        ).returncode
        == 0
    )
    listing = qualitybridge("users", "list", "--data-dir", data).stdout
    assert "m7" in listing
    assert "Machine" in listing
    assert "WC-1" in listing
    short = qualitybridge("users", "add", "m8", "--role", "Machine", "--password", "short", "--data-dir", data)
    assert short.returncode == 2
    assert "at least 8 characters" in short.stderr


def test_pki_trust_names_what_it_could_not_find(tmp_path: Path) -> None:
    completed = qualitybridge("pki", "trust", "0123abcd", "--data-dir", str(tmp_path))
    assert completed.returncode == 2
    assert "0123abcd" in completed.stderr
