"""QualityBridge: OPC UA server between ERP/QMS and the shop floor.

The public surface, for users and extensions (a new ERP adapter implements `ErpClient`):

- configuration: `QualityBridgeConfig`, `load_config`, `ConfigError`;
- the adapter port: `ErpClient`, `ErpUnavailable` (retry later), `ErpRejected` (refused for good);
- the domain types the port speaks: orders, characteristics, gauges, results, outbox entries.

Everything else (`qualitybridge.store`, `qualitybridge.server`, services) is internal and may change between
releases; `tests/unit/test_public_surface.py` keeps this list honest.
"""

from __future__ import annotations

from qualitybridge.config import ConfigError, QualityBridgeConfig, load_config
from qualitybridge.domain.errors import GaugeBlocked, InvalidValue, QualityBridgeError, ReportRefused, UnknownReference
from qualitybridge.domain.model import (
    CalibrationStatus,
    Classification,
    Confirmation,
    ErpSnapshot,
    InspectionCharacteristic,
    MeasurementReport,
    MeasurementResult,
    Operation,
    OrderState,
    OutboxState,
    ProductionOrder,
    ResultEvaluation,
    SpcAlarm,
    TestEquipment,
)
from qualitybridge.domain.ports import ErpClient, ErpRejected, ErpUnavailable
from qualitybridge.domain.postings import OutboxEntry

__version__ = "0.1.0"  # pyproject.toml's version; the running identity is qualitybridge.domain.build

__all__ = [
    "CalibrationStatus",
    "Classification",
    "ConfigError",
    "Confirmation",
    "ErpClient",
    "ErpRejected",
    "ErpSnapshot",
    "ErpUnavailable",
    "GaugeBlocked",
    "InspectionCharacteristic",
    "InvalidValue",
    "MeasurementReport",
    "MeasurementResult",
    "Operation",
    "OrderState",
    "OutboxEntry",
    "OutboxState",
    "ProductionOrder",
    "QualityBridgeConfig",
    "QualityBridgeError",
    "ReportRefused",
    "ResultEvaluation",
    "SpcAlarm",
    "TestEquipment",
    "UnknownReference",
    "__version__",
    "load_config",
]
