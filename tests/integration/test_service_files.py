"""The shipped service definitions: the systemd unit is hardened and runs `serve`; compose has healthchecks on
/readyz, restart policies and PostgreSQL, and its configuration enables the endpoint the healthcheck probes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from qualitybridge.config import load_config

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "qualitybridge.service"
COMPOSE = ROOT / "docker" / "compose.yaml"


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_unit_runs_serve_as_its_own_user_and_is_hardened() -> None:
    settings = unit_settings()
    assert settings["ExecStart"][0].endswith("qualitybridge serve --config /etc/qualitybridge/qualitybridge.toml")
    assert settings["User"] == ["qualitybridge"]
    assert settings["RestartPreventExitStatus"] == ["2"]  # a configuration error is not restarted in a loop
    assert settings["StateDirectoryMode"] == ["0700"]
    assert settings["UMask"] == ["0077"]
    for hardening in (
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "CapabilityBoundingSet",
        "RestrictAddressFamilies",
        "SystemCallFilter",
    ):
        assert hardening in settings, hardening
    assert settings["ProtectSystem"] == ["strict"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify() -> None:
    completed = subprocess.run(
        ["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, timeout=60, check=False
    )
    # Only the ExecStart binary may be missing (it exists once installed under /opt/qualitybridge).
    problems = [line for line in completed.stderr.splitlines() if "is not executable" not in line and line.strip()]
    assert problems == []


def test_compose_restarts_checks_readiness_and_uses_postgresql() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    assert text.count("restart: unless-stopped") == 3
    assert "image: postgres:" in text
    assert "pg_isready" in text
    assert "condition: service_healthy" in text
    config = load_config(ROOT / "docker" / "compose-qualitybridge.toml")
    assert config.operations.enabled
    assert config.store.url.startswith("postgresql+asyncpg://")
    assert ":" not in config.store.url.split("@")[0].removeprefix("postgresql+asyncpg://"), "no password in the file"
    probe = re.search(r"urlopen\('http://127\.0\.0\.1:(\d+)/readyz'", text)
    assert probe, "the healthcheck probes /readyz"
    assert int(probe.group(1)) == config.operations.port
