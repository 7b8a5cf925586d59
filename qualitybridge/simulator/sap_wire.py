"""How the simulated SAP system writes its OData V2/V4 answers: paths, SAP unit codes, dates, keys, errors.

Written independently of the SAP adapter's own reading of them (`qualitybridge.adapters.sap_odata`), on purpose:
the simulator stands for SAP, so a mistake in the adapter's mapping is not mirrored here and the tests see it.
The simulator imports the domain and the REST contract only (tests/unit/test_layers.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = [
    "CONFIRMATION_SERVICE",
    "INSPECTION_LOT_SERVICE",
    "ODATA_ROOT",
    "ORDER_SERVICE",
    "QUALITY_NOTIFICATION_ROOT",
    "alpha_out",
    "change_time",
    "odata_error",
    "quantity",
    "sap_date",
    "sap_time",
    "sap_unit",
]

ODATA_ROOT = "/sap/opu/odata/sap"
ORDER_SERVICE = "API_PRODUCTION_ORDER_2_SRV"
INSPECTION_LOT_SERVICE = "API_INSPECTIONLOT_SRV"
CONFIRMATION_SERVICE = "API_PROD_ORDER_CONFIRMATION_2_SRV"
QUALITY_NOTIFICATION_ROOT = "/sap/opu/odata4/sap/api_qualitynotification/srvd_a2x/sap/qualitynotification/0001"

# UNECE Rec. 20 codes of the simulator's orders → the SAP internal unit codes (T006) SAP would show.
_SAP_UNITS = {
    "MMT": "MM",
    "4H": "UM",
    "CMT": "CM",
    "MTR": "M",
    "CEL": "CEL",
    "GRM": "G",
    "KGM": "KG",
    "NU": "NM",
    "NEW": "N",
    "BAR": "BAR",
    "P1": "%",
    "SEC": "S",
    "C62": "PC",
    "H87": "PC",
}


def sap_unit(unece: str) -> str:
    """The SAP code for a UNECE code; an unknown one is passed on as it is (SAP would show a code of its own)."""
    return _SAP_UNITS.get(unece, unece)


def alpha_out(key: str) -> str:
    """A numeric key without leading zeros: how SAP compares '00000042' and '42'."""
    if key.isdigit():
        return key.lstrip("0") or "0"
    return key


def sap_date(moment: datetime) -> str:
    """Edm.DateTime of the day (midnight UTC): /Date(ms)/."""
    midnight = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return f"/Date({int(midnight.timestamp()) * 1000})/"


def sap_time(moment: datetime) -> str:
    """Edm.Time of the time of day: PT06H00M00S."""
    return f"PT{moment.hour:02d}H{moment.minute:02d}M{moment.second:02d}S"


def change_time(moment: datetime) -> str:
    """LastChangeDateTime as API_PRODUCTION_ORDER_2_SRV publishes it: Edm.String(14), YYYYMMDDhhmmss, UTC."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def quantity(value: float) -> str:
    """Edm.Decimal as a string, three decimals at most."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def odata_error(code: str, message: str) -> dict[str, Any]:
    """The OData V2 error body of SAP Gateway."""
    return {"error": {"code": code, "message": {"lang": "en", "value": message}}}
