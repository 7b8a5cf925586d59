"""The command line: help that explains, a bad configuration refused at start, users and pki.

Commands run in-process through the console script's entry function (tests/harness.py, invoke_cli); the refusal of
a bad configuration at start runs as a process of its own, since its exit status is what a service manager sees.
How configuration errors name the key and the fix is tested without a process in tests/unit/test_config.py.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.harness import invoke_cli, run_cli_process


@pytest.mark.parametrize("command", [[], ["serve"], ["demo"], ["simulator"], ["pki"], ["users"]])
def test_help_explains_each_command(command: list[str]) -> None:
    completed = invoke_cli(*command, "--help")
    assert completed.returncode == 0
    assert "usage: qualitybridge" in completed.stdout
    assert len(completed.stdout.splitlines()) > 5


def test_top_level_help_lists_commands_and_examples() -> None:
    text = invoke_cli("--help").stdout
    for word in ("serve", "demo", "simulator", "pki", "users", "examples:", "docs/configuration.md"):
        assert word in text


def test_serve_with_a_bad_config_exits_2_before_opening_a_port(tmp_path: Path) -> None:
    config = tmp_path / "qualitybridge.toml"
    config.write_text("[server]\nport = 0\n", encoding="utf-8")
    completed = run_cli_process("serve", "--config", str(config))
    assert completed.returncode == 2
    assert "server.port" in completed.stderr


def test_users_add_list_and_refuse_a_short_password(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()  # admin commands refuse a data folder that does not exist
    data = str(tmp_path / "data")
    assert (
        invoke_cli(
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
    listing = invoke_cli("users", "list", "--data-dir", data).stdout
    assert "m7" in listing
    assert "Machine" in listing
    assert "WC-1" in listing
    short = invoke_cli("users", "add", "m8", "--role", "Machine", "--password", "short", "--data-dir", data)
    assert short.returncode == 2
    assert "at least 8 characters" in short.stderr


def test_pki_trust_names_what_it_could_not_find(tmp_path: Path) -> None:
    completed = invoke_cli("pki", "trust", "0123abcd", "--data-dir", str(tmp_path))
    assert completed.returncode == 2
    assert "0123abcd" in completed.stderr


def test_a_command_in_process_leaves_the_test_process_as_it_found_it(tmp_path: Path) -> None:
    # invoke_cli stands in for a process of its own: what a command changes in its process must not leak into the
    # tests after it (outbox sets up logging with force=True and the library levels).
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    httpx_level = logging.getLogger("httpx").level
    environment, folder = dict(os.environ), os.getcwd()
    (tmp_path / "data").mkdir()
    listed = invoke_cli("outbox", "list", "--data-dir", "data", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert (root.handlers, root.level) == (handlers, level)
    assert logging.getLogger("httpx").level == httpx_level
    assert (dict(os.environ), os.getcwd()) == (environment, folder)
    assert invoke_cli("users", "list", "--data-dir", str(tmp_path / "nowhere")).returncode == 2
