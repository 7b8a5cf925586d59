"""`[erp] adapter` and `[qms]`: a config naming an unknown adapter, or missing a key its adapter needs, is refused
at load time with the key named; secrets come from a file or the environment, never from the file itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from qualitybridge.adapters.combined import ErpWithQms
from qualitybridge.adapters.factory import erp_client_for
from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.adapters.sap_s4hana import SapS4HanaClient
from qualitybridge.config import ConfigError, ErpSettings, QualityBridgeConfig, SapS4HanaSettings, load_config

SAP = '[erp]\nadapter = "sap-s4hana"\nbase_url = "https://s4.example.com"\nplant = "1010"\n'


def _load(tmp_path: Path, text: str) -> QualityBridgeConfig:
    path = tmp_path / "qualitybridge.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def test_rest_stays_the_default(tmp_path: Path) -> None:
    config = _load(tmp_path, '[erp]\nbase_url = "http://erp:8080"\n')
    assert isinstance(config.erp, ErpSettings)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[erp]\nadapter = "oracle"\n', "erp.adapter: unknown adapter 'oracle'"),
        ('[erp]\nadapter = "sap-s4hana"\nbase_url = "https://s4"\nusername = "U"\npassword_env = "P"\n', "erp.plant"),
        (SAP, "erp.username is missing"),
        (SAP + 'username = "U"\n', "erp.password_file or erp.password_env"),
        (SAP + 'username = "U"\npassword = "secret"\n', "erp.password: never write a secret"),
        (SAP + 'token_url = "https://idp/token"\n', "erp.client_id, erp.client_secret_file"),
        ('[qms]\nadapter = "rest"\n', "qms.base_url: required setting is missing"),
    ],
)
def test_a_config_the_adapter_cannot_use_is_refused_naming_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, text)
    assert named in str(error.value)


async def test_sap_with_a_password_file_and_a_qms(tmp_path: Path) -> None:
    secret = tmp_path / "sap-password"
    secret.write_text("s3cret\n", encoding="utf-8")
    text = (
        SAP + f'sap_client = "100"\nusername = "QB"\npassword_file = "{secret}"\n[qms]\nbase_url = "http://qms:8080"\n'
    )
    config = _load(tmp_path, text)
    assert isinstance(config.erp, SapS4HanaSettings)
    client = erp_client_for(config.erp, config.qms)
    assert isinstance(client, ErpWithQms)
    await client.aclose()


async def test_a_secret_that_cannot_be_read_is_named_before_anything_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _load(tmp_path, SAP + 'username = "QB"\npassword_env = "QB_TEST_SAP_PASSWORD"\n')
    monkeypatch.delenv("QB_TEST_SAP_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match=r"erp\.password_env: the environment variable QB_TEST_SAP_PASSWORD"):
        erp_client_for(config.erp)
    monkeypatch.setenv("QB_TEST_SAP_PASSWORD", "s3cret")
    client = erp_client_for(config.erp)
    assert isinstance(client, SapS4HanaClient)
    await client.aclose()
    missing = _load(tmp_path, SAP + f'username = "QB"\npassword_file = "{tmp_path / "nope"}"\n')
    with pytest.raises(ConfigError, match=r"erp\.password_file: cannot read"):
        erp_client_for(missing.erp)
    rest = erp_client_for(ErpSettings())
    assert isinstance(rest, RestErpClient)
    await rest.aclose()
