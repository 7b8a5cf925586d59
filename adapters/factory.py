"""The adapters a configuration names, so the composition root depends on the ports, not on client classes.

Secrets are read here, once, from the file or environment variable the configuration names; a missing one is a
`ConfigError` naming the key, raised before any port opens.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from qualitybridge.adapters.combined import ErpWithQms, FullErp
from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.adapters.sap_s4hana import ClientCredentials, SapS4HanaClient
from qualitybridge.config import ConfigError, ErpSettings, QmsSettings, SapS4HanaSettings

__all__ = ["erp_client_for", "sap_client_for"]


def _secret_file(path: Path, key: str) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"erp.{key}: cannot read {path}: {exc.strerror}") from None
    if not secret:
        raise ConfigError(f"erp.{key}: {path} is empty")
    return secret


def _sap_auth(settings: SapS4HanaSettings) -> httpx.Auth:
    if settings.uses_oauth:
        assert settings.client_secret_file is not None  # noqa: S101 - checked by the settings
        secret = _secret_file(settings.client_secret_file, "client_secret_file")
        return ClientCredentials(
            settings.token_url, settings.client_id, secret, timeout_seconds=settings.timeout_seconds
        )
    if settings.password_file is not None:
        password = _secret_file(settings.password_file, "password_file")
    else:
        password = os.environ.get(settings.password_env, "")
        if not password:
            raise ConfigError(f"erp.password_env: the environment variable {settings.password_env} is not set")
    return httpx.BasicAuth(settings.username, password)


def sap_client_for(settings: SapS4HanaSettings) -> SapS4HanaClient:
    return SapS4HanaClient(
        settings.base_url,
        plant=settings.plant,
        sap_client=settings.sap_client,
        auth=_sap_auth(settings),
        timeout_seconds=settings.timeout_seconds,
        page_size=settings.page_size,
        orders_per_request=settings.orders_per_request,
        quality_notification_type=settings.quality_notification_type,
        quality_notification_path=settings.quality_notification_path,
    )


def erp_client_for(settings: ErpSettings | SapS4HanaSettings, qms: QmsSettings | None = None) -> FullErp:
    """The ERP adapter `[erp]` names; with `[qms]`, gauges and SPC alarms go to the QMS instead."""
    erp: FullErp
    if isinstance(settings, SapS4HanaSettings):
        erp = sap_client_for(settings)
    else:
        erp = RestErpClient(settings.base_url, timeout_seconds=settings.timeout_seconds)
    if qms is None:
        return erp
    return ErpWithQms(erp, RestErpClient(qms.base_url, timeout_seconds=qms.timeout_seconds))
