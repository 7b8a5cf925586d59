"""The command line: help that explains, configuration errors that name the key and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qualitybridge.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


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


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "qualitybridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_key_is_named_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "[server]\nprot = 4840\n"))
    assert "server.prot: unknown setting" in str(error.value)
    assert "docs/configuration.md" in str(error.value)


def test_wrong_value_is_named_with_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, '[erp]\nbase_url = "erp:8080"\n[server]\nport = 70000\n'))
    message = str(error.value)
    assert "erp.base_url" in message
    assert "must start with http:// or https://" in message
    assert "server.port" in message


def test_store_url_needs_an_async_driver(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"store\.url.*postgresql\+asyncpg"):
        load_config(write(tmp_path, '[store]\nurl = "postgresql://db/qb"\n'))


def test_broken_toml_and_missing_file_say_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[server\n"))
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "missing.toml")


def test_relative_data_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'data_dir = "state"\n'))
    assert config.data_dir == (tmp_path / "state").resolve()
    assert config.store_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'state' / 'qualitybridge.db'}"


def test_serve_with_a_bad_config_exits_2_before_opening_a_port(tmp_path: Path) -> None:
    completed = qualitybridge("serve", "--config", str(write(tmp_path, "[server]\nport = 0\n")))
    assert completed.returncode == 2
    assert "server.port" in completed.stderr


@pytest.mark.parametrize("shipped", ["docker/qualitybridge.toml", "docker/compose-qualitybridge.toml"])
def test_shipped_configurations_are_valid(shipped: str) -> None:
    load_config(ROOT / shipped)


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
