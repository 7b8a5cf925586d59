"""The generic REST ERP adapter: implements the ErpClient port over the contract in `rest_contract` with httpx.

Failures are sorted once, here: anything worth retrying (network errors, timeouts, 5xx, 429) becomes
`ErpUnavailable`; a refusal that will not change on retry (other 4xx) becomes `ErpRejected`.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from pydantic import ValidationError

from qualitybridge.adapters.rest_contract import (
    API_PREFIX,
    IDEMPOTENCY_HEADER,
    BookingReceipt,
    EquipmentPage,
    OrdersPage,
    confirmation_to_dto,
    equipment_from_dto,
    kpi_report_to_dto,
    order_from_dto,
    result_to_dto,
    spc_alarm_to_dto,
)
from qualitybridge.domain.model import ErpSnapshot
from qualitybridge.domain.ports import ErpRejected, ErpUnavailable
from qualitybridge.domain.postings import (
    ConfirmationPosting,
    KpiPosting,
    MeasurementPosting,
    OutboxEntry,
    SpcAlarmPosting,
    UnreadablePosting,
)

__all__ = ["RestErpClient"]

_log = logging.getLogger(__name__)


def _posting_request(entry: OutboxEntry) -> tuple[str, dict[str, Any]]:
    """The contract's path and DTO for a posting."""
    match entry.posting:
        case MeasurementPosting(result=result):
            return "/results", result_to_dto(result).model_dump(mode="json")
        case ConfirmationPosting(record=record):
            return "/confirmations", confirmation_to_dto(record.confirmation).model_dump(mode="json")
        case SpcAlarmPosting(record=record):
            return "/spc-alarms", spc_alarm_to_dto(record.alarm).model_dump(mode="json")
        case KpiPosting(report=report):
            return "/quality-kpis", kpi_report_to_dto(report).model_dump(mode="json")
        case UnreadablePosting(stored_kind=kind, reason=reason):
            raise ErpRejected(f"outbox entry {entry.seq} ({kind}) has an unreadable payload: {reason}")
    raise ErpRejected(f"no ERP endpoint for postings of kind {entry.kind!r}")  # pragma: no cover - union is closed


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"HTTP {response.status_code}: {body['error']['code']}: {body['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"


class RestErpClient:
    def __init__(
        self, base_url: str, *, timeout_seconds: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + API_PREFIX,
            timeout=timeout_seconds,
            transport=transport,
            headers={"User-Agent": "QualityBridge"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ErpUnavailable(f"{method} {path}: {type(exc).__name__}: {exc or 'no answer'}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise ErpUnavailable(f"{method} {path}: {_error_text(response)}")
        if response.status_code >= 400:
            raise ErpRejected(f"{method} {path}: {_error_text(response)}")
        return response

    async def fetch_snapshot(self) -> ErpSnapshot:
        orders_response = await self._request("GET", "/orders")
        equipment_response = await self._request("GET", "/equipment")
        try:
            orders = OrdersPage.model_validate_json(orders_response.content)
            equipment = EquipmentPage.model_validate_json(equipment_response.content)
            return ErpSnapshot(
                orders=tuple(order_from_dto(dto) for dto in orders.orders),
                equipment=tuple(equipment_from_dto(dto) for dto in equipment.equipment),
            )
        except ValidationError as exc:
            # The ERP sent data that breaks the contract: keep serving the last good data, say what broke.
            raise ErpUnavailable(
                f"ERP data violates the contract: {exc.error_count()} errors, first: "
                f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
            ) from exc

    async def post(self, entry: OutboxEntry) -> str:
        path, body = _posting_request(entry)
        response = await self._request("POST", path, json=body, headers={IDEMPOTENCY_HEADER: entry.idempotency_key})
        try:
            return BookingReceipt.model_validate_json(response.content).document_no
        except ValidationError as exc:
            raise ErpUnavailable(f"ERP answered {response.status_code} without a booking receipt") from exc
