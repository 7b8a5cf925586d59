"""The generic REST ERP adapter: implements the ports over the contract in `rest_contract` with httpx.

It is a `MasterDataSource` (watermark: the two revision counters, "<orders>:<equipment>"; deltas through
`?changed_since=`), a `PostingTarget` (`POST /api/v1/postings`, falling back to one request per posting when the
ERP answers that path with 404 or 405) and, as before, an `ErpClient`.

Failures are sorted once, here: anything worth retrying (network errors, timeouts, 5xx, 429) becomes
`ErpUnavailable`; a refusal that will not change on retry (other 4xx) becomes `ErpRejected`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import ValidationError

from qualitybridge.adapters.rest_contract import (
    API_PREFIX,
    IDEMPOTENCY_HEADER,
    BatchAnswer,
    BatchItem,
    BookingReceipt,
    ConfirmationPostingDTO,
    EquipmentPage,
    OrdersPage,
    PostingBatch,
    ResultPosting,
    SpcAlarmPostingDTO,
    confirmation_to_dto,
    equipment_from_dto,
    order_from_dto,
    result_to_dto,
    spc_alarm_to_dto,
)
from qualitybridge.domain.model import ErpSnapshot, MasterDataChanges, TestEquipment
from qualitybridge.domain.ports import (
    ErpRejected,
    ErpUnavailable,
    PostingFailure,
    PostingOutcome,
    PostingReceipt,
)
from qualitybridge.domain.postings import (
    ConfirmationPosting,
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
        case UnreadablePosting(stored_kind=kind, reason=reason):
            raise ErpRejected(f"outbox entry {entry.seq} ({kind}) has an unreadable payload: {reason}")
    raise ErpRejected(f"no ERP endpoint for postings of kind {entry.kind!r}")  # pragma: no cover - union is closed


def _batch_item(entry: OutboxEntry) -> BatchItem:
    match entry.posting:
        case MeasurementPosting(result=result):
            return ResultPosting(idempotency_key=entry.idempotency_key, body=result_to_dto(result))
        case ConfirmationPosting(record=record):
            body = confirmation_to_dto(record.confirmation)
            return ConfirmationPostingDTO(idempotency_key=entry.idempotency_key, body=body)
        case SpcAlarmPosting(record=record):
            return SpcAlarmPostingDTO(idempotency_key=entry.idempotency_key, body=spc_alarm_to_dto(record.alarm))
    raise ErpRejected(f"outbox entry {entry.seq} ({entry.kind}) cannot be delivered: {entry.posting}")


def _classified(status: int, message: str) -> ErpUnavailable | ErpRejected:
    if status >= 500 or status in (408, 424, 429):
        return ErpUnavailable(message)
    return ErpRejected(message)


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
        self._batch_supported = True

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

    @property
    def source_id(self) -> str:
        return "erp"

    async def fetch_all(self) -> MasterDataChanges:
        snapshot, revisions = await self._pages("")
        return MasterDataChanges(orders=snapshot.orders, equipment=snapshot.equipment, watermark=revisions, full=True)

    async def fetch_changes(self, since: str) -> MasterDataChanges:
        try:
            orders_revision, equipment_revision = (int(part) for part in since.split(":"))
        except ValueError:
            _log.warning("unreadable ERP watermark %r: fetching everything once", since)
            return await self.fetch_all()
        query = (f"?changed_since={orders_revision}", f"?changed_since={equipment_revision}")
        orders_response = await self._request("GET", "/orders" + query[0])
        equipment_response = await self._request("GET", "/equipment" + query[1])
        orders, equipment = self._parsed(orders_response, equipment_response)
        return MasterDataChanges(
            orders=tuple(order_from_dto(dto) for dto in orders.orders),
            withdrawn=tuple(orders.withdrawn),
            equipment=tuple(equipment_from_dto(dto) for dto in equipment.equipment),
            watermark=f"{orders.revision}:{equipment.revision}",
        )

    @staticmethod
    def _parsed(
        orders_response: httpx.Response, equipment_response: httpx.Response
    ) -> tuple[OrdersPage, EquipmentPage]:
        try:
            orders = OrdersPage.model_validate_json(orders_response.content)
            equipment = EquipmentPage.model_validate_json(equipment_response.content)
            # Mapping to the domain validates too (e.g. crossed limits): do it here to report it the same way.
            for dto in orders.orders:
                order_from_dto(dto)
        except ValidationError as exc:
            # The ERP sent data that breaks the contract: keep serving the last good data, say what broke.
            raise ErpUnavailable(
                f"ERP data violates the contract: {exc.error_count()} errors, first: "
                f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
            ) from exc
        return orders, equipment

    async def fetch_equipment(self, since: str = "") -> tuple[tuple[TestEquipment, ...], str]:
        """Only the gauges (all, or changed since the revision `since`) and the equipment revision: what a QMS
        serves next to an ERP that has its own adapter (the QMS need not list orders)."""
        query = f"?changed_since={int(since)}" if since.isdigit() else ""
        response = await self._request("GET", "/equipment" + query)
        try:
            page = EquipmentPage.model_validate_json(response.content)
        except ValidationError as exc:
            raise ErpUnavailable(
                f"QMS data violates the contract: {exc.error_count()} errors, first: "
                f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
            ) from exc
        return tuple(equipment_from_dto(dto) for dto in page.equipment), str(page.revision)

    async def _pages(self, query: str) -> tuple[ErpSnapshot, str]:
        orders_response = await self._request("GET", "/orders" + query)
        equipment_response = await self._request("GET", "/equipment" + query)
        orders, equipment = self._parsed(orders_response, equipment_response)
        snapshot = ErpSnapshot(
            orders=tuple(order_from_dto(dto) for dto in orders.orders),
            equipment=tuple(equipment_from_dto(dto) for dto in equipment.equipment),
        )
        return snapshot, f"{orders.revision}:{equipment.revision}"

    async def post_batch(self, entries: Sequence[OutboxEntry]) -> Sequence[PostingOutcome]:
        """All entries in one `POST /postings`; one outcome each. Raises ErpUnavailable when the batch got no answer."""
        outcomes: dict[int, PostingOutcome] = {}
        sendable: list[tuple[OutboxEntry, BatchItem]] = []
        for entry in entries:
            try:
                sendable.append((entry, _batch_item(entry)))
            except ErpRejected as exc:
                outcomes[entry.seq] = PostingFailure(entry.seq, exc)
        if sendable and not self._batch_supported:
            await self._post_each([entry for entry, _item in sendable], outcomes)
        elif sendable:
            await self._post_together(sendable, outcomes)
        return [outcomes[entry.seq] for entry in entries if entry.seq in outcomes]

    async def _post_together(
        self, sendable: list[tuple[OutboxEntry, BatchItem]], outcomes: dict[int, PostingOutcome]
    ) -> None:
        batch = PostingBatch(postings=[item for _entry, item in sendable])
        try:
            response = await self._request("POST", "/postings", json=batch.model_dump(mode="json"))
        except ErpRejected as exc:
            if " HTTP 404" not in str(exc) and " HTTP 405" not in str(exc):
                raise ErpUnavailable(f"the ERP refused the batch as a whole: {exc}") from exc
            _log.warning("the ERP has no batch posting path (%s): posting one at a time", exc)
            self._batch_supported = False
            await self._post_each([entry for entry, _item in sendable], outcomes)
            return
        try:
            answer = BatchAnswer.model_validate_json(response.content)
        except ValidationError as exc:
            raise ErpUnavailable(f"ERP answered {response.status_code} without a batch answer") from exc
        for position, (entry, item) in enumerate(sendable):
            found = answer.outcomes[position] if position < len(answer.outcomes) else None
            if found is None or found.idempotency_key != item.idempotency_key:
                continue  # no outcome for this entry: the relay reports the contract violation and retries
            if found.status in (200, 201):
                outcomes[entry.seq] = PostingReceipt(entry.seq, found.document_no or "")
                continue
            error = f"{found.error.code}: {found.error.message}" if found.error else "no error body"
            classified = _classified(found.status, f"HTTP {found.status}: {error}")
            outcomes[entry.seq] = PostingFailure(entry.seq, classified, attempted=found.status != 424)

    async def _post_each(self, entries: list[OutboxEntry], outcomes: dict[int, PostingOutcome]) -> None:
        """One request per posting; an order's temporary failure holds its later postings (not attempted)."""
        stopped: set[str] = set()
        for entry in entries:
            if entry.order_no in stopped:
                outcomes[entry.seq] = PostingFailure(
                    entry.seq, ErpUnavailable("held behind an earlier posting"), attempted=False
                )
                continue
            try:
                outcomes[entry.seq] = PostingReceipt(entry.seq, await self.post(entry))
            except ErpUnavailable as exc:
                outcomes[entry.seq] = PostingFailure(entry.seq, exc)
                stopped.add(entry.order_no)
            except ErpRejected as exc:
                outcomes[entry.seq] = PostingFailure(entry.seq, exc)

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
