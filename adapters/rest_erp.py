"""The generic REST ERP adapter: implements the ports over the contract in `rest_contract` with httpx.

It is a `MasterDataSource` (watermark: the two revision counters, "<orders>:<equipment>"; deltas through
`?changed_since=`), a `PostingTarget` (`POST /api/v1/postings`, falling back to one request per posting when the
ERP answers that path with 404 or 405) and, as before, an `ErpClient`.

Failures are sorted once, here: anything worth retrying (network errors, timeouts, 5xx, 429) becomes
`ErpUnavailable`; a refusal that will not change on retry (other 4xx) becomes `ErpRejected`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import httpx
import pydantic_core
from pydantic import ValidationError

from qualitybridge.adapters.rest_contract import (
    API_PREFIX,
    IDEMPOTENCY_HEADER,
    MAX_BATCH_POSTINGS,
    BatchAnswer,
    BookingReceipt,
    ConfirmationPostingDTO,
    EquipmentDTO,
    OrderDTO,
    SpcAlarmPostingDTO,
    confirmation_to_dto,
    equipment_from_dto,
    kpi_report_to_dto,
    order_from_dto,
    result_posting_wire,
    result_posting_wire_from_json,
    result_to_dto,
    spc_alarm_to_dto,
)
from qualitybridge.domain.model import ErpSnapshot, MasterDataChanges, ProductionOrder, SyncFinding, TestEquipment
from qualitybridge.domain.ports import (
    ErpRejected,
    ErpUnavailable,
    PostingFailure,
    PostingOutcome,
    PostingReceipt,
)
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
_YIELD_EVERY_ORDERS = 50


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


def _batch_item(entry: OutboxEntry) -> dict[str, Any]:
    """The entry as an item of `PostingBatch`, in its JSON form."""
    if entry.kind == "measurement" and entry.record_json is not None:
        # Most of a page: read from the result's stored JSON, without decoding the posting's models (unless the
        # JSON is not in the form the store writes, e.g. a row of an earlier release: then as below).
        item = result_posting_wire_from_json(entry.idempotency_key, entry.record_json)
        if item is not None:
            return item
    match entry.posting:
        case MeasurementPosting(result=result):
            return result_posting_wire(entry.idempotency_key, result)  # most of a page: built without the models
        case ConfirmationPosting(record=record):
            body = confirmation_to_dto(record.confirmation)
            return ConfirmationPostingDTO(idempotency_key=entry.idempotency_key, body=body).model_dump(mode="json")
        case SpcAlarmPosting(record=record):
            alarm = spc_alarm_to_dto(record.alarm)
            return SpcAlarmPostingDTO(idempotency_key=entry.idempotency_key, body=alarm).model_dump(mode="json")
        case UnreadablePosting(stored_kind=kind, reason=reason):
            raise ErpRejected(f"outbox entry {entry.seq} ({kind}) has an unreadable payload: {reason}")
    raise ErpRejected(f"outbox entry {entry.seq} ({entry.kind}) cannot be delivered: {entry.posting}")


_JSON = {"Content-Type": "application/json"}


def _classified(status: int, message: str) -> ErpUnavailable | ErpRejected:
    if status >= 500 or status in (408, 424, 429):
        return ErpUnavailable(message)
    return ErpRejected(message)


def _page(body: Any, member: str) -> list[Any]:
    """The records of a contract page, not yet validated (each is validated on its own)."""
    if not isinstance(body, dict) or not isinstance(body.get(member), list):
        raise ValueError(f"the answer has no list {member!r}")
    records: list[Any] = body[member]
    return records


def _revision(body: Any) -> int:
    revision = body.get("revision") if isinstance(body, dict) else None
    if not isinstance(revision, int) or isinstance(revision, bool):
        raise ValueError("the answer has no integer 'revision'")
    return revision


def _withdrawn(body: Any) -> tuple[str, ...]:
    """v1 addition: the orders withdrawn since `changed_since` (absent or empty otherwise)."""
    withdrawn = body.get("withdrawn", []) if isinstance(body, dict) else []
    if not isinstance(withdrawn, list) or not all(isinstance(no, str) for no in withdrawn):
        raise ValueError("'withdrawn' is not a list of order numbers")
    return tuple(withdrawn)


async def _snapshot(orders_page: list[Any], equipment_page: list[Any]) -> ErpSnapshot:
    """A record that breaks the contract or an invariant of the domain (a key listed twice, a quantity that is
    not finite, crossed limits) is refused as a finding; the others sync."""
    findings: list[SyncFinding] = []
    orders: dict[str, ProductionOrder] = {}
    refused: set[str] = set()
    for position, raw in enumerate(orders_page):
        if position % _YIELD_EVERY_ORDERS == _YIELD_EVERY_ORDERS - 1:
            # A page of hundreds of orders takes seconds to check on a busy machine; the OPC UA clients' keep-alive
            # probes (1 s) are answered in between.
            await asyncio.sleep(0)
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


def _booked_outcomes(content: bytes) -> list[dict[str, Any]] | None:
    """The outcomes of a batch answer in which every posting was booked (201) or found booked (200), with a
    document number, as plain dicts: the common answer, read without a model per outcome. None for any other
    answer (a failure among them, a form the model would convert or refuse): `_answered_by_model` reads it."""
    try:
        answer = pydantic_core.from_json(content)
        found: list[dict[str, Any]] = answer["outcomes"]
        if type(found) is not list:
            return None
        for outcome in found:
            status = outcome["status"]
            if (
                type(status) is not int
                or status not in (200, 201)
                or type(outcome["idempotency_key"]) is not str
                or type(outcome["document_no"]) is not str
                or type(outcome.get("duplicate", False)) is not bool
                or outcome.get("error") is not None
            ):
                return None
    except (ValueError, KeyError, TypeError):
        return None
    return found


def _answered_by_model(
    response: httpx.Response, sendable: list[tuple[OutboxEntry, dict[str, Any]]], outcomes: dict[int, PostingOutcome]
) -> None:
    try:
        answer = BatchAnswer.model_validate_json(response.content)
    except ValidationError as exc:
        raise ErpUnavailable(f"ERP answered {response.status_code} without a batch answer") from exc
    for position, (entry, item) in enumerate(sendable):
        found = answer.outcomes[position] if position < len(answer.outcomes) else None
        if found is None or found.idempotency_key != item["idempotency_key"]:
            continue  # no outcome for this entry: the relay reports the contract violation and retries
        if found.status in (200, 201):
            outcomes[entry.seq] = PostingReceipt(entry.seq, found.document_no or "")
            continue
        error = f"{found.error.code}: {found.error.message}" if found.error else "no error body"
        classified = _classified(found.status, f"HTTP {found.status}: {error}")
        outcomes[entry.seq] = PostingFailure(entry.seq, classified, attempted=found.status != 424)


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
        snapshot, revisions, _withdrawn = await self._read("", "")
        return MasterDataChanges(
            orders=snapshot.orders,
            equipment=snapshot.equipment,
            watermark=revisions,
            full=True,
            findings=snapshot.findings,
            refused_order_numbers=snapshot.refused_order_numbers,
        )

    async def fetch_changes(self, since: str) -> MasterDataChanges:
        try:
            orders_revision, equipment_revision = (int(part) for part in since.split(":"))
        except ValueError:
            _log.warning("unreadable ERP watermark %r: fetching everything once", since)
            return await self.fetch_all()
        snapshot, revisions, withdrawn = await self._read(
            f"?changed_since={orders_revision}", f"?changed_since={equipment_revision}"
        )
        return MasterDataChanges(
            orders=snapshot.orders,
            withdrawn=withdrawn,
            equipment=snapshot.equipment,
            watermark=revisions,
            findings=snapshot.findings,
            refused_order_numbers=snapshot.refused_order_numbers,
        )

    async def _read(self, orders_query: str, equipment_query: str) -> tuple[ErpSnapshot, str, tuple[str, ...]]:
        """Both pages: the records (each validated on its own), the revisions as a watermark, the withdrawn."""
        orders_response = await self._request("GET", "/orders" + orders_query)
        equipment_response = await self._request("GET", "/equipment" + equipment_query)
        try:
            # Python's parser: 1e309 arrives as inf and is refused by the domain, not the page
            orders_body, equipment_body = orders_response.json(), equipment_response.json()
            orders_page, equipment_page = _page(orders_body, "orders"), _page(equipment_body, "equipment")
            revisions = f"{_revision(orders_body)}:{_revision(equipment_body)}"
            withdrawn = _withdrawn(orders_body)
        except ValueError as exc:
            # The ERP sent something that is not the contract's page at all: keep serving the last good data.
            raise ErpUnavailable(f"ERP data violates the contract: {exc}") from exc
        return await _snapshot(orders_page, equipment_page), revisions, withdrawn

    async def fetch_equipment(self, since: str = "") -> tuple[tuple[TestEquipment, ...], str]:
        """Only the gauges (all, or changed since the revision `since`) and the equipment revision: what a QMS
        serves next to an ERP that has its own adapter (the QMS need not list orders). Broken records are left
        out (logged), as in a full sync."""
        query = f"?changed_since={int(since)}" if since.isdigit() else ""
        response = await self._request("GET", "/equipment" + query)
        try:
            body = response.json()
            snapshot = await _snapshot([], _page(body, "equipment"))
            revision = _revision(body)
        except ValueError as exc:
            raise ErpUnavailable(f"QMS data violates the contract: {exc}") from exc
        for finding in snapshot.findings:
            _log.warning("QMS sync: %s refused: %s", finding.key, finding.reason)
        return snapshot.equipment, str(revision)

    async def post_batch(self, entries: Sequence[OutboxEntry]) -> Sequence[PostingOutcome]:
        """All entries in one `POST /postings`; one outcome each. Raises ErpUnavailable when the batch got no answer."""
        outcomes: dict[int, PostingOutcome] = {}
        sendable: list[tuple[OutboxEntry, dict[str, Any]]] = []
        # KPI postings have their own path (POST /quality-kpis) and are not items of the batch contract.
        own_path = [entry for entry in entries if entry.kind == "kpi"]
        for entry in entries:
            if entry.kind == "kpi":
                continue
            try:
                sendable.append((entry, _batch_item(entry)))
            except ErpRejected as exc:
                outcomes[entry.seq] = PostingFailure(entry.seq, exc)
        if sendable and not self._batch_supported:
            await self._post_each([entry for entry, _item in sendable], outcomes)
        elif sendable:
            await self._post_together(sendable, outcomes)
        if own_path:
            await self._post_each(own_path, outcomes)
        return [outcomes[entry.seq] for entry in entries if entry.seq in outcomes]

    async def _post_together(
        self, sendable: list[tuple[OutboxEntry, dict[str, Any]]], outcomes: dict[int, PostingOutcome]
    ) -> None:
        if len(sendable) > MAX_BATCH_POSTINGS:
            raise ValueError(f"{len(sendable)} postings, more than a batch of the contract ({MAX_BATCH_POSTINGS})")
        # Serialized by pydantic-core, not httpx's `json=` (the standard library's encoder): an eighth of the
        # relay's CPU per posting. The items hold no NaN or infinity (the contract's null stands for them).
        batch = pydantic_core.to_json({"postings": [item for _entry, item in sendable]})
        try:
            response = await self._request("POST", "/postings", content=batch, headers=_JSON)
        except ErpRejected as exc:
            if " HTTP 404" not in str(exc) and " HTTP 405" not in str(exc):
                raise ErpUnavailable(f"the ERP refused the batch as a whole: {exc}") from exc
            _log.warning("the ERP has no batch posting path (%s): posting one at a time", exc)
            self._batch_supported = False
            await self._post_each([entry for entry, _item in sendable], outcomes)
            return
        answered = _booked_outcomes(response.content)
        if answered is None:
            _answered_by_model(response, sendable, outcomes)
            return
        for position, (entry, item) in enumerate(sendable):
            found = answered[position] if position < len(answered) else None
            if found is None or found["idempotency_key"] != item["idempotency_key"]:
                continue  # no outcome for this entry: the relay reports the contract violation and retries
            outcomes[entry.seq] = PostingReceipt(entry.seq, found["document_no"])

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
        """What the ERP releases now. A record that breaks the contract or an invariant of the domain (a key
        listed twice, a quantity that is not finite, crossed limits) is refused as a finding; the others sync."""
        snapshot, _revisions, _withdrawn = await self._read("", "")
        return snapshot

    async def post(self, entry: OutboxEntry) -> str:
        path, body = _posting_request(entry)
        response = await self._request("POST", path, json=body, headers={IDEMPOTENCY_HEADER: entry.idempotency_key})
        try:
            return BookingReceipt.model_validate_json(response.content).document_no
        except ValidationError as exc:
            raise ErpUnavailable(f"ERP answered {response.status_code} without a booking receipt") from exc
