"""The ERP adapter a configuration names, so the composition root depends on the port, not on a client class."""

from __future__ import annotations

from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.config import ErpSettings
from qualitybridge.domain.ports import ErpClient

__all__ = ["erp_client_for"]


def erp_client_for(settings: ErpSettings) -> ErpClient:
    """The ERP client for `[erp]`: the generic REST contract (today the only adapter)."""
    return RestErpClient(settings.base_url, timeout_seconds=settings.timeout_seconds)
