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
    EquipmentDTO,
    OrderDTO,
    confirmation_to_dto,
    equipment_from_dto,
    kpi_report_to_dto,
    order_from_dto,
    result_to_dto,
    spc_alarm_to_dto,
)
from qualitybridge.domain.model import ErpSnapshot, ProductionOrder, SyncFinding, TestEquipment
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


def _page(response: httpx.Response, member: str) -> list[Any]:
    """The records of a contract page, not yet validated (each is validated on its own)."""
    body = response.json()  # Python's parser: 1e309 arrives as inf and is refused by the domain, not the page
    if not isinstance(body, dict) or not isinstance(body.get(member), list):
        raise ValueError(f"the answer has no list {member!r}")
    records: list[Any] = body[member]
    return records


def _record_key(raw: Any, field: str, position: int) -> str:
    key = raw.get(field) if isinstance(raw, dict) else None
    return key if isinstance(key, str) and key else f"#{position + 1} (no {field})"


def _reason(exc: ValidationError) -> str:
    """The first error in plain words: where, and what is wrong (pydantic's "Value error, " prefix dropped)."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {message}{more}" if where else f"{message}{more}"


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
        """What the ERP releases now. A record that breaks the contract or an invariant of the domain (a key
        listed twice, a quantity that is not finite, crossed limits) is refused as a finding; the others sync."""
        orders_response = await self._request("GET", "/orders")
        equipment_response = await self._request("GET", "/equipment")
        try:
            orders_page = _page(orders_response, "orders")
            equipment_page = _page(equipment_response, "equipment")
        except ValueError as exc:
            # The ERP sent something that is not the contract's page at all: keep serving the last good data.
            raise ErpUnavailable(f"ERP data violates the contract: {exc}") from exc
        findings: list[SyncFinding] = []
        orders: dict[str, ProductionOrder] = {}
        refused: set[str] = set()
        for position, raw in enumerate(orders_page):
            key = _record_key(raw, "order_no", position)
            try:
                order = order_from_dto(OrderDTO.model_validate(raw))
            except ValidationError as exc:
                findings.append(SyncFinding(key=f"order {key}", reason=_reason(exc)))
                refused.add(key)
                continue
            if order.order_no in orders or order.order_no in refused:
                findings.append(SyncFinding(key=f"order {key}", reason="order number listed twice in one snapshot"))
                orders.pop(order.order_no, None)
                refused.add(order.order_no)
                continue
            orders[order.order_no] = order
        equipment: dict[str, TestEquipment] = {}
        for position, raw in enumerate(equipment_page):
            key = _record_key(raw, "equipment_id", position)
            try:
                gauge = equipment_from_dto(EquipmentDTO.model_validate(raw))
            except ValidationError as exc:
                findings.append(SyncFinding(key=f"equipment {key}", reason=_reason(exc)))
                continue
            if gauge.equipment_id in equipment:
                findings.append(SyncFinding(key=f"equipment {key}", reason="equipment id listed twice"))
                continue
            equipment[gauge.equipment_id] = gauge
        return ErpSnapshot(
            orders=tuple(orders.values()),
            equipment=tuple(equipment.values()),
            findings=tuple(findings),
            refused_order_numbers=tuple(sorted(refused)),
        )

    async def post(self, entry: OutboxEntry) -> str:
        path, body = _posting_request(entry)
        response = await self._request("POST", path, json=body, headers={IDEMPOTENCY_HEADER: entry.idempotency_key})
        try:
            return BookingReceipt.model_validate_json(response.content).document_no
        except ValidationError as exc:
            raise ErpUnavailable(f"ERP answered {response.status_code} without a booking receipt") from exc
