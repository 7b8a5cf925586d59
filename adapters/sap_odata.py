"""SAP Gateway OData V2 wire facts shared by the SAP adapter and the simulator's SAP face.

Service and entity-set names, the unit mapping between SAP's internal unit codes and UNECE Rec. 20 codes, and the
value formats (`/Date(ms)/`, `YYYYMMDDhhmmss`, `PT06H00M00S`, decimals as strings, ALPHA-converted keys), so that
both sides of the tests speak the same dialect from one place. See docs/sap-s4hana.md.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "CONFIRMATION_SERVICE",
    "INSPECTION_LOT_SERVICE",
    "ODATA_ROOT",
    "ORDER_SERVICE",
    "QUALITY_NOTIFICATION_ROOT",
    "SAP_TO_UNECE",
    "UNECE_TO_SAP",
    "alpha_equal",
    "alpha_out",
    "format_change_time",
    "odata_error",
    "odata_error_text",
    "parse_date",
    "parse_duration",
    "quantity",
    "quote",
    "sap_date",
    "sap_time",
]

ODATA_ROOT = "/sap/opu/odata/sap"
ORDER_SERVICE = "API_PRODUCTION_ORDER_2_SRV"
INSPECTION_LOT_SERVICE = "API_INSPECTIONLOT_SRV"
CONFIRMATION_SERVICE = "API_PROD_ORDER_CONFIRMATION_2_SRV"
# OData V4: JSON without the "d" wrapper ({"value": [...]}), error messages as plain strings.
QUALITY_NOTIFICATION_ROOT = "/sap/opu/odata4/sap/api_qualitynotification/srvd_a2x/sap/qualitynotification/0001"

# SAP's internal unit codes (T006) → UNECE Rec. 20 common codes. Anything else is a sync finding, never a guess.
SAP_TO_UNECE: dict[str, str] = {
    "MM": "MMT",
    "UM": "4H",
    "CM": "CMT",
    "M": "MTR",
    "CEL": "CEL",
    "G": "GRM",
    "KG": "KGM",
    "NM": "NU",
    "N": "NEW",
    "BAR": "BAR",
    "%": "P1",
    "S": "SEC",
    "PC": "H87",
    "ST": "H87",
}
# The other way, for confirmations and the simulator: the first SAP code of each UNECE code; C62 ("one") as PC.
UNECE_TO_SAP: dict[str, str] = {"C62": "PC"}
for _sap, _unece in SAP_TO_UNECE.items():
    UNECE_TO_SAP.setdefault(_unece, _sap)

_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$")


def alpha_out(key: str) -> str:
    """A numeric SAP key without its leading zeros ('000001000417' → '1000417'), as people and machines write it."""
    return key.lstrip("0") or "0" if key.isdigit() else key


def alpha_equal(left: str, right: str) -> bool:
    """SAP compares numeric-looking keys by ALPHA conversion: '00000042' equals '42'."""
    return alpha_out(left) == alpha_out(right)


def quantity(value: float) -> str:
    """Edm.Decimal(13,3) as SAP takes it: plain digits, at most three decimals, no exponent ('1234567.5')."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def quote(value: str) -> str:
    """An OData string literal: single quotes, inner quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def sap_date(moment: datetime) -> str:
    """Edm.DateTime of a date (midnight UTC), as SAP Gateway sends it: /Date(ms)/."""
    midnight = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return f"/Date({int(midnight.timestamp() * 1000)})/"


def sap_time(moment: datetime) -> str:
    """Edm.Time of the time of day: PT06H00M00S."""
    return f"PT{moment.hour:02d}H{moment.minute:02d}M{moment.second:02d}S"


def parse_date(value: Any) -> datetime | None:
    """/Date(ms)/ or /Date(ms+0000)/ → aware UTC datetime; None for empty or null."""
    if not value:
        return None
    match = _DATE.match(str(value))
    if match is None:
        raise ValueError(f"not an OData V2 date: {value!r}")
    return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)


def parse_duration(value: Any) -> timedelta:
    if not value:
        return timedelta()
    match = _DURATION.match(str(value))
    if match is None:
        raise ValueError(f"not an OData V2 time: {value!r}")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def format_change_time(moment: datetime) -> str:
    """LastChangeDateTime of API_PRODUCTION_ORDER_2_SRV: Edm.String(14), YYYYMMDDhhmmss in UTC."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def odata_error(code: str, message: str) -> dict[str, Any]:
    """An OData V2 error body as SAP Gateway sends it."""
    return {"error": {"code": code, "message": {"lang": "en", "value": message}}}


def odata_error_text(status: int, body: Any, fallback: str = "") -> str:
    """A readable line from an OData error body: 'HTTP 400 QM/123: Characteristic 0010 is closed'."""
    try:
        error = body["error"]
        message = error["message"]
        text = message["value"] if isinstance(message, dict) else str(message)
        return f"HTTP {status} {error.get('code', '')}: {text}".replace(" :", ":")
    except (KeyError, TypeError):
        return f"HTTP {status}: {fallback[:200]}"
