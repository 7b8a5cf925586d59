"""Where `serve` puts the outbox relay (qualitybridge/cli/serve.py `_fork_relay`): decided before any fork."""

from __future__ import annotations

import os

import pytest

from qualitybridge.cli import serve
from qualitybridge.config import QualityBridgeConfig


@pytest.fixture
def no_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> int:
        raise AssertionError("forked where the relay belongs in the server's process")

    monkeypatch.setattr(os, "fork", refuse)


@pytest.mark.usefixtures("no_fork")
def test_the_sap_adapter_relays_in_the_servers_process(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="qualitybridge")
    config = QualityBridgeConfig.model_validate(
        {
            "erp": {
                "adapter": "sap-s4hana",
                "base_url": "http://sap.example",
                "plant": "1010",
                "username": "QB_RELAY",
                "password_env": "QB_SAP_PASSWORD",
            }
        }
    )
    assert config.erp.relay_process  # the default, which SAP's posting keys overrule
    assert serve._fork_relay(config) is None
    assert "the sap-s4hana adapter relays in the server's process" in caplog.text


@pytest.mark.usefixtures("no_fork")
def test_relay_process_false_keeps_the_relay_in_the_servers_process() -> None:
    config = QualityBridgeConfig.model_validate({"erp": {"relay_process": False}})
    assert serve._fork_relay(config) is None
