"""Configuration files: errors that name the key and the fix, paths relative to the file, shipped examples valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from qualitybridge.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize("shipped", ["docker/qualitybridge.toml", "docker/compose-qualitybridge.toml"])
def test_shipped_configurations_are_valid(shipped: str) -> None:
    load_config(ROOT / shipped)


def test_the_calibration_reminder_time_is_hh_mm_or_empty() -> None:
    from qualitybridge.config import QualityEventSettings

    assert QualityEventSettings().calibration_reminder_at == "06:00"
    assert QualityEventSettings(calibration_reminder_at="").calibration_reminder_at == ""
    with pytest.raises(ValueError, match="calibration_reminder_at"):
        QualityEventSettings(calibration_reminder_at="25:00")
