"""The SAP S/4HANA adapter: the master-data source and posting target over SAP's OData V2 APIs, with httpx.

Reading (docs/sap-s4hana.md has the field mapping both ways):

- orders: `API_PRODUCTION_ORDER_2_SRV/A_ProductionOrder_2` of the configured plant. A full fetch asks for the
  released ones; a delta asks for every order of the plant whose `LastChangeDateTime` is at or after the watermark
  (released or not, so that closing, technically completing or taking back a release is seen as a withdrawal).
  The field has whole seconds, so the query says `ge`, and the watermark is the newest `LastChangeDateTime` seen,
  plus one second when that second had passed by SAP's own clock (the `Date` of its answer) when the page was
  read: a change saved later in the same second is fetched again next time, never missed, and an unchanged
  plant costs one empty page.
- operations: `A_ProductionOrderOperation_2`; inspection lots: `API_INSPECTIONLOT_SRV/A_InspectionLot` of each
  order; characteristics: `A_InspectionCharacteristic` of each lot. A characteristic belongs to the operation whose
  `OrderIntBillOfOperationsItem` equals its `InspPlanOperationInternalID`. Several orders are asked for in one
  request (`$filter` with `or`), pages are followed by `__next`.
- units are mapped to UNECE codes; an unknown unit, a qualitative or limitless characteristic is left out and
  reported as a finding (logged at each sync), never guessed.

Writing, exactly once although SAP honours no idempotency header:

- a measurement is an `A_InspectionResultValue` whose key the adapter derives from the outbox entry: lot, operation
  and characteristic of the result, and `InspResultValueInternalID` = the outbox sequence number. A repeat of a
  posting whose answer was lost collides with the first (SAP refuses an existing key); the adapter then reads that
  key back and, when it holds the same value, takes it as the booking;
- a confirmation (`ProdnOrdConf2`) gets its keys from SAP, so the adapter writes the confirmation id into
  `ExternalSystemConfirmation` and looks it up before every post: found means booked, nothing is posted again;
- an SPC alarm becomes an OData V4 `QualityNotification` when a notification type is configured, looked up by
  its text (which ends in the alarm id) before every post; without one it is refused for good and stays visible
  as a dead letter (or `[qms]` takes it).

Every write carries the CSRF token fetched with `X-CSRF-Token: Fetch` and the session cookies; a 403 with
`X-CSRF-Token: Required` fetches a new token once and repeats. OData error bodies become readable messages.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from qualitybridge.adapters.sap_odata import (
    CONFIRMATION_SERVICE,
    INSPECTION_LOT_SERVICE,
    ODATA_ROOT,
    ORDER_SERVICE,
    QUALITY_NOTIFICATION_ROOT,
    SAP_TO_UNECE,
    UNECE_TO_SAP,
    alpha_equal,
    alpha_out,
    format_change_time,
    odata_error_text,
    parse_date,
    parse_duration,
    quantity,
    quote,
)
from qualitybridge.domain.model import (
    ErpSnapshot,
    InspectionCharacteristic,
    MasterDataChanges,
    Operation,
    OrderState,
    ProductionOrder,
    SyncFinding,
)
from qualitybridge.domain.ports import ErpRejected, ErpUnavailable, PostingFailure, PostingOutcome, PostingReceipt
from qualitybridge.domain.postings import (
    ConfirmationPosting,
    MeasurementPosting,
    OutboxEntry,
    SpcAlarmPosting,
    UnreadablePosting,
)

__all__ = ["ClientCredentials", "SapS4HanaClient", "notification_priority", "notification_text"]

_log = logging.getLogger(__name__)

_EPOCH_WATERMARK = "19700101000000"
_JSON = {"Accept": "application/json"}


class _NoAnswer(ErpUnavailable):
    """SAP did not answer at all (connection refused, timeout): likely down, so the batch stops here."""


class ClientCredentials(httpx.Auth):
    """OAuth2 client credentials: a bearer token from `token_url`, fetched when missing or refused (401)."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout_seconds: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._token_url = token_url
        self._credentials = (client_id, client_secret)
        self._timeout = timeout_seconds
        self._transport = transport
        self._token: str | None = None

    async def _fetch_token(self) -> str:
        async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as client:
            response = await client.post(
                self._token_url, data={"grant_type": "client_credentials"}, auth=self._credentials
            )
        if response.status_code != 200:
            raise httpx.HTTPStatusError(
                f"token endpoint answered {response.status_code}", request=response.request, response=response
            )
        return str(response.json()["access_token"])

    async def async_auth_flow(self, request: httpx.Request) -> Any:
        if self._token is None:
            self._token = await self._fetch_token()
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401:
            self._token = await self._fetch_token()
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request


@dataclass(frozen=True)
class _OperationKeys:
    """Where a result of an order operation goes in SAP: the inspection lot and the operation's internal id."""

    lot: str
    operation_internal_id: str


def _number(value: Any) -> float | None:
    """Edm.Decimal/Edm.Double arrive as strings ("6.2030000000000001E+01", "50"); empty means not set."""
    if value is None or value == "":
        return None
    return float(value)


def _format_measured(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


class SapS4HanaClient:
    """Implements MasterDataSource, PostingTarget and ErpClient for SAP S/4HANA (OData V2)."""

    def __init__(
        self,
        base_url: str,
        *,
        plant: str,
        sap_client: str = "",
        auth: httpx.Auth | tuple[str, str] | None = None,
        timeout_seconds: float = 10.0,
        page_size: int = 500,
        orders_per_request: int = 20,
        quality_notification_type: str = "",
        quality_notification_path: str = QUALITY_NOTIFICATION_ROOT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # sap-client is added per request, not as client-wide params: httpx would replace a __next link's query.
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + ODATA_ROOT,
            auth=auth,
            timeout=timeout_seconds,
            transport=transport,
            headers={"User-Agent": "QualityBridge", **_JSON},
        )
        self._plant = plant
        self._sap_client = sap_client
        self._page_size = page_size
        self._chunk = orders_per_request
        self._csrf: dict[str, str] = {}
        self._operation_keys: dict[tuple[str, str], _OperationKeys] = {}
        self._decimals: dict[tuple[str, str, str], int] = {}
        self._server_second = ""  # SAP's clock at the first page of the last collection read (Date header)
        self._notification_type = quality_notification_type
        self._notification_root = base_url.rstrip("/") + quality_notification_path.rstrip("/")
        self._materials: dict[str, str] = {}

    @property
    def source_id(self) -> str:
        return "erp"

    async def aclose(self) -> None:
        await self._client.aclose()

    # ---- HTTP ---------------------------------------------------------------------------------------

    async def _send(
        self, method: str, url: str, *, params: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        if self._sap_client and "sap-client=" not in url:
            params = {**(params or {}), "sap-client": self._sap_client}
        try:
            return await self._client.request(method, url, params=params, **kwargs)
        except httpx.TransportError as exc:
            raise _NoAnswer(f"SAP {method} {url}: {type(exc).__name__}: {exc or 'no answer'}") from exc
        except httpx.HTTPError as exc:
            raise ErpUnavailable(f"SAP {method} {url}: {type(exc).__name__}: {exc or 'no answer'}") from exc

    @staticmethod
    def _failure(method: str, url: str, response: httpx.Response) -> ErpUnavailable | ErpRejected:
        try:
            body = response.json()
        except ValueError:
            body = None
        text = f"SAP {method} {url.split('?')[0]}: {odata_error_text(response.status_code, body, response.text)}"
        # 401/403 are a login or authorisation problem the basis team fixes; the posting must survive it.
        if response.status_code >= 500 or response.status_code in (401, 403, 408, 429):
            return ErpUnavailable(text)
        return ErpRejected(text)

    async def _get(self, url: str, params: dict[str, str] | None = None) -> Any:
        response = await self._send("GET", url, params=params)
        if response.status_code != 200:
            raise self._failure("GET", url, response)
        if not self._server_second and "date" in response.headers:
            with contextlib.suppress(TypeError, ValueError):
                self._server_second = format_change_time(parsedate_to_datetime(response.headers["date"]))
        try:
            return response.json()["d"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ErpUnavailable(f"SAP GET {url}: answer is not OData V2 JSON") from exc

    async def _collection(self, service: str, entity_set: str, odata_filter: str) -> list[dict[str, Any]]:
        """All entities matching the filter, page after page (`__next`)."""
        url: str | None = f"/{service}/{entity_set}"
        params: dict[str, str] | None = {"$filter": odata_filter, "$top": str(self._page_size), "$format": "json"}
        found: list[dict[str, Any]] = []
        self._server_second = ""
        while url is not None:
            page = await self._get(url, params)
            found.extend(page.get("results", []))
            url = page.get("__next")
            params = None  # the __next link carries the query, sap-client included
        return found

    async def _csrf_token(self, root: str, *, renew: bool = False) -> str:
        """The CSRF token for the service at `root` (a V2 service name's path, or a V4 service's absolute root)."""
        if renew or root not in self._csrf:
            response = await self._send("GET", f"{root}/", headers={"X-CSRF-Token": "Fetch"})
            token = response.headers.get("x-csrf-token", "")
            if response.status_code != 200 or not token or token.lower() == "required":
                raise ErpUnavailable(f"SAP {root}: no CSRF token ({response.status_code})")
            self._csrf[root] = token
        return self._csrf[root]

    async def _write(self, service: str, entity_set: str, body: dict[str, Any]) -> httpx.Response:
        """POST with the CSRF handshake: a 403 'Required' fetches a new token once and repeats."""
        root = service if service.startswith("http") else f"/{service}"
        url = f"{root}/{entity_set}"
        for renew in (False, True):
            token = await self._csrf_token(root, renew=renew)
            response = await self._send("POST", url, json=body, headers={"X-CSRF-Token": token})
            if response.status_code == 403 and response.headers.get("x-csrf-token", "").lower() == "required":
                continue
            return response
        return response

    # ---- master data --------------------------------------------------------------------------------

    def _orders_filter(self, extra: str) -> str:
        return f"ProductionPlant eq {quote(self._plant)} and {extra}"

    async def fetch_all(self) -> MasterDataChanges:
        headers = await self._collection(
            ORDER_SERVICE, "A_ProductionOrder_2", self._orders_filter("OrderIsReleased eq 'X'")
        )
        watermark = self._watermark(_EPOCH_WATERMARK, headers)
        released = [header for header in headers if self._is_open(header)]
        orders, findings = await self._with_details(released)
        return MasterDataChanges(orders=orders, watermark=watermark, full=True, findings=findings)

    async def fetch_changes(self, since: str) -> MasterDataChanges:
        if not (len(since) == 14 and since.isdigit()):
            _log.warning("unreadable SAP watermark %r: fetching everything once", since)
            return await self.fetch_all()
        headers = await self._collection(
            ORDER_SERVICE, "A_ProductionOrder_2", self._orders_filter(f"LastChangeDateTime ge {quote(since)}")
        )
        watermark = self._watermark(since, headers)
        open_orders = [header for header in headers if self._is_open(header)]
        withdrawn = tuple(alpha_out(str(h["ManufacturingOrder"])) for h in headers if not self._is_open(h))
        orders, findings = await self._with_details(open_orders)
        return MasterDataChanges(orders=orders, withdrawn=withdrawn, watermark=watermark, findings=findings)

    def _watermark(self, since: str, headers: Iterable[dict[str, Any]]) -> str:
        """The newest change seen; one second on when SAP's clock had left that second when the page was read."""
        newest = max([since, *(str(h.get("LastChangeDateTime") or "") for h in headers)])
        if newest == _EPOCH_WATERMARK and self._server_second:
            return self._server_second  # nothing released yet: not every closed order since 1970 next time
        if self._server_second and newest < self._server_second:
            moment = datetime.strptime(newest, "%Y%m%d%H%M%S").replace(tzinfo=UTC) + timedelta(seconds=1)
            return format_change_time(moment)
        return newest

    @staticmethod
    def _is_open(header: dict[str, Any]) -> bool:
        """Released, and neither technically completed nor closed: the shop floor may work on it."""
        return (
            header.get("OrderIsReleased") == "X"
            and header.get("OrderIsTechnicallyCompleted", "") != "X"
            and header.get("OrderIsClosed", "") != "X"
        )

    async def _with_details(
        self, headers: list[dict[str, Any]]
    ) -> tuple[tuple[ProductionOrder, ...], tuple[SyncFinding, ...]]:
        orders: list[ProductionOrder] = []
        findings: list[SyncFinding] = []
        for start in range(0, len(headers), self._chunk):
            chunk = headers[start : start + self._chunk]
            numbers = [str(header["ManufacturingOrder"]) for header in chunk]
            operations = await self._by_orders(ORDER_SERVICE, "A_ProductionOrderOperation_2", numbers)
            lots = await self._by_orders(INSPECTION_LOT_SERVICE, "A_InspectionLot", numbers)
            characteristics = await self._by_lots([str(lot["InspectionLot"]) for lot in lots])
            for header in chunk:
                order = self._order(header, operations, lots, characteristics, findings)
                if order is not None:
                    orders.append(order)
        return tuple(orders), tuple(findings)

    async def _by_orders(self, service: str, entity_set: str, numbers: Sequence[str]) -> list[dict[str, Any]]:
        condition = " or ".join(f"ManufacturingOrder eq {quote(number)}" for number in numbers)
        return await self._collection(service, entity_set, f"({condition})")

    async def _by_lots(self, lots: Sequence[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(lots), self._chunk):
            condition = " or ".join(f"InspectionLot eq {quote(lot)}" for lot in lots[start : start + self._chunk])
            found += await self._collection(INSPECTION_LOT_SERVICE, "A_InspectionCharacteristic", f"({condition})")
        return found

    def _order(
        self,
        header: dict[str, Any],
        operations: Iterable[dict[str, Any]],
        lots: Iterable[dict[str, Any]],
        characteristics: Iterable[dict[str, Any]],
        findings: list[SyncFinding],
    ) -> ProductionOrder | None:
        number = str(header["ManufacturingOrder"])
        order_no = alpha_out(number)
        self._materials[order_no] = str(header.get("Material") or "")
        mine = sorted(
            (op for op in operations if alpha_equal(str(op["ManufacturingOrder"]), number)),
            key=lambda op: str(op["ManufacturingOrderOperation"]),
        )
        lot = next((item for item in lots if alpha_equal(str(item["ManufacturingOrder"]), number)), None)
        lot_no = alpha_out(str(lot["InspectionLot"])) if lot is not None else ""
        lot_characteristics = (
            [c for c in characteristics if alpha_equal(str(c["InspectionLot"]), lot_no)] if lot_no else []
        )
        quantity_unit = SAP_TO_UNECE.get(str(header.get("ProductionUnit") or "PC"))
        if quantity_unit is None:
            unit = header.get("ProductionUnit")
            findings.append(SyncFinding(key=f"order {order_no}", reason=f"unknown SAP unit {unit!r}; order left out"))
            return None
        built: list[Operation] = []
        for op in mine:
            internal_id = str(op["OrderIntBillOfOperationsItem"])
            operation_no = str(op["ManufacturingOrderOperation"])
            if lot_no:
                self._operation_keys[(order_no, operation_no)] = _OperationKeys(lot_no, internal_id)
            chars = []
            for item in lot_characteristics:
                if not alpha_equal(str(item["InspPlanOperationInternalID"]), internal_id):
                    continue
                characteristic = self._characteristic(item, lot_no, order_no, operation_no, findings)
                if characteristic is not None:
                    chars.append(characteristic)
                    key = (order_no, operation_no, characteristic.characteristic_id)
                    self._decimals[key] = characteristic.decimal_places
            built.append(
                Operation(
                    operation_no=operation_no,
                    description=str(op.get("MfgOrderOperationText") or ""),
                    work_centre=str(op.get("WorkCenter") or ""),
                    characteristics=tuple(chars),
                )
            )
        planned_start = self._moment(header.get("MfgOrderPlannedStartDate"), header.get("MfgOrderPlannedStartTime"))
        planned_end = self._moment(header.get("MfgOrderPlannedEndDate"), header.get("MfgOrderPlannedEndTime"))
        try:
            return ProductionOrder(
                order_no=order_no,
                material_no=str(header.get("Material") or ""),
                part_no=str(header.get("Material") or ""),
                plant=str(header.get("ProductionPlant") or ""),
                work_centre=built[0].work_centre if built else "",
                planned_quantity=_number(header.get("TotalQuantity")) or 0.0,
                quantity_unit=quantity_unit,
                state=OrderState.ALLOWED_TO_START,
                plan_version=lot_no,
                planned_start=planned_start,
                planned_end=planned_end,
                operations=tuple(built),
            )
        except ValueError as exc:
            findings.append(SyncFinding(key=f"order {order_no}", reason=f"{exc}; order left out"))
            return None

    @staticmethod
    def _moment(date_value: Any, time_value: Any) -> datetime | None:
        day = parse_date(date_value)
        return None if day is None else day + parse_duration(time_value)

    @staticmethod
    def _characteristic(
        item: dict[str, Any], lot_no: str, order_no: str, operation_no: str, findings: list[SyncFinding]
    ) -> InspectionCharacteristic | None:
        characteristic_id = str(item["InspectionCharacteristic"])
        label = f"operation {operation_no} characteristic {characteristic_id}"

        def left_out(reason: str) -> None:
            findings.append(SyncFinding(key=f"order {order_no}", reason=f"{label}: {reason}; left out"))

        if item.get("InspSpecIsQuantitative", "X") != "X":
            left_out("qualitative, not measured through QualityBridge")
            return None
        sap_unit = str(item.get("InspectionSpecificationUnit") or "")
        unit = SAP_TO_UNECE.get(sap_unit)
        if unit is None:
            left_out(f"unknown SAP unit {sap_unit!r} (no UNECE code known)")
            return None
        lower, upper = _number(item.get("InspSpecLowerLimit")), _number(item.get("InspSpecUpperLimit"))
        if lower is None or upper is None:
            left_out("needs a lower and an upper limit")
            return None
        target = _number(item.get("InspSpecTargetValue"))
        try:
            return InspectionCharacteristic(
                characteristic_id=characteristic_id,
                name=str(item.get("InspectionCharacteristicText") or characteristic_id),
                nominal=target if target is not None else (lower + upper) / 2,
                lower_limit=lower,
                upper_limit=upper,
                unit=unit,
                decimal_places=int(item.get("InspSpecDecimalPlaces") or 3),
                sample_size=max(1, int(_number(item.get("InspCharacteristicSampleSize")) or 1)),
                gauge_type=str(item.get("InspLotTestEquipInternalID") or ""),
                plan_version=lot_no,
            )
        except ValueError as exc:
            left_out(str(exc))
            return None

    async def fetch_snapshot(self) -> ErpSnapshot:
        changes = await self.fetch_all()
        return ErpSnapshot(orders=changes.orders, equipment=changes.equipment)

    # ---- postings -----------------------------------------------------------------------------------

    async def post_batch(self, entries: Sequence[OutboxEntry]) -> Sequence[PostingOutcome]:
        """One request per posting (SAP's $batch is not used); an order stops at its first temporary failure,
        and the whole batch at a posting SAP did not answer at all (the rest is not attempted this round)."""
        outcomes: list[PostingOutcome] = []
        stopped: set[str] = set()
        silent = False
        for entry in entries:
            if silent or entry.order_no in stopped:
                held = ErpUnavailable("not attempted: held behind an earlier posting")
                outcomes.append(PostingFailure(entry.seq, held, attempted=False))
                continue
            try:
                outcomes.append(PostingReceipt(entry.seq, await self.post(entry)))
            except ErpUnavailable as exc:
                outcomes.append(PostingFailure(entry.seq, exc))
                stopped.add(entry.order_no)
                silent = isinstance(exc, _NoAnswer)
            except ErpRejected as exc:
                outcomes.append(PostingFailure(entry.seq, exc))
        return outcomes

    async def post(self, entry: OutboxEntry) -> str:
        match entry.posting:
            case MeasurementPosting():
                return await self._post_result(entry)
            case ConfirmationPosting():
                return await self._post_confirmation(entry)
            case SpcAlarmPosting():
                if not self._notification_type:
                    raise ErpRejected(
                        "SPC alarms are not deliverable to SAP S/4HANA without [erp] quality_notification_type: "
                        "set it, or configure [qms] for them (the alarm stays in the outbox)"
                    )
                return await self._post_notification(entry)
            case UnreadablePosting(stored_kind=kind, reason=reason):
                raise ErpRejected(f"outbox entry {entry.seq} ({kind}) has an unreadable payload: {reason}")
        raise ErpRejected(f"no SAP target for postings of kind {entry.kind!r}")  # pragma: no cover

    async def _keys(self, order_no: str, operation_no: str) -> _OperationKeys:
        """The lot and operation id of an order operation; asked of SAP when no sync has seen the order yet (after a
        restart the delta sync reads only changed orders), with the decimals its results are formatted with."""
        keys = self._operation_keys.get((order_no, operation_no))
        if keys is None:
            operations = await self._by_orders(ORDER_SERVICE, "A_ProductionOrderOperation_2", [order_no])
            lots = await self._by_orders(INSPECTION_LOT_SERVICE, "A_InspectionLot", [order_no])
            if not lots:
                raise ErpRejected(f"SAP has no inspection lot for order {order_no}")
            lot_no = alpha_out(str(lots[0]["InspectionLot"]))
            decimals = {
                (alpha_out(str(c["InspPlanOperationInternalID"])), str(c["InspectionCharacteristic"])): int(
                    c.get("InspSpecDecimalPlaces") or 3
                )
                for c in await self._by_lots([lot_no])
            }
            for op in operations:
                number = str(op["ManufacturingOrderOperation"])
                internal_id = str(op["OrderIntBillOfOperationsItem"])
                self._operation_keys[(order_no, number)] = _OperationKeys(lot_no, internal_id)
                for (op_id, characteristic), places in decimals.items():
                    if op_id == alpha_out(internal_id):
                        self._decimals[(order_no, number, characteristic)] = places
            keys = self._operation_keys.get((order_no, operation_no))
            if keys is None:
                raise ErpRejected(f"SAP order {order_no} has no operation {operation_no}")
        return keys

    async def _post_result(self, entry: OutboxEntry) -> str:
        assert isinstance(entry.posting, MeasurementPosting)  # noqa: S101 - dispatched by post()
        result = entry.posting.result
        report = result.report
        keys = await self._keys(report.order_no, report.operation_no)
        decimals = self._decimals.get((report.order_no, report.operation_no, report.characteristic_id), 3)
        if report.value != report.value or report.value in (float("inf"), float("-inf")):
            raise ErpRejected(f"result {result.result_id} has no finite value; SAP takes only measured values")
        key = {
            "InspectionLot": keys.lot,
            "InspPlanOperationInternalID": keys.operation_internal_id,
            "InspectionCharacteristic": report.characteristic_id,
            # Derived from the outbox entry: a repeat of this posting collides instead of booking twice.
            "InspResultValueInternalID": f"{entry.seq % 100_000_000:08d}",
        }
        body = {**key, "InspResultFrmtdMeasuredValue": _format_measured(report.value, decimals)}
        response = await self._write(INSPECTION_LOT_SERVICE, "A_InspectionResultValue", body)
        document = "/".join(key.values())
        if response.status_code in (200, 201):
            return document
        failure = self._failure("POST", "A_InspectionResultValue", response)
        if isinstance(failure, ErpRejected) and response.status_code in (400, 409):
            # Refused: perhaps because an earlier delivery whose answer was lost booked this very key. Look.
            booked = await self._result_value(key)
            if booked is not None:
                if _number(booked.get("InspResultFrmtdMeasuredValue")) == _number(body["InspResultFrmtdMeasuredValue"]):
                    _log.info("result %s was booked before (answer lost): %s", result.result_id, document)
                    return document
                raise ErpRejected(f"{failure}; SAP holds another value under {document}") from failure
        raise failure

    async def _result_value(self, key: dict[str, str]) -> dict[str, Any] | None:
        path = ",".join(f"{name}={quote(value)}" for name, value in key.items())
        url = f"/{INSPECTION_LOT_SERVICE}/A_InspectionResultValue({path})"
        response = await self._send("GET", url)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._failure("GET", url, response)
        found: dict[str, Any] = response.json()["d"]
        return found

    async def _post_confirmation(self, entry: OutboxEntry) -> str:
        assert isinstance(entry.posting, ConfirmationPosting)  # noqa: S101 - dispatched by post()
        record = entry.posting.record
        confirmation = record.confirmation
        # SAP assigns the keys; ours travels in ExternalSystemConfirmation and is looked up before each post.
        external = record.confirmation_id
        earlier = await self._collection(
            CONFIRMATION_SERVICE, "ProdnOrdConf2", f"ExternalSystemConfirmation eq {quote(external)}"
        )
        if earlier:
            _log.info("confirmation %s was booked before: not posted again", external)
            return f"{earlier[0]['ConfirmationGroup']}/{earlier[0]['ConfirmationCount']}"
        unit = UNECE_TO_SAP.get(confirmation.unit)
        if unit is None:
            raise ErpRejected(f"confirmation {external}: no SAP unit for UNECE {confirmation.unit!r}")
        body = {
            "OrderID": confirmation.order_no,
            "OrderOperation": confirmation.operation_no,
            "ConfirmationYieldQuantity": quantity(confirmation.yield_quantity),
            "ConfirmationScrapQuantity": quantity(confirmation.scrap_quantity),
            "ConfirmationReworkQuantity": quantity(confirmation.rework_quantity),
            "ConfirmationUnit": unit,
            "VarianceReasonCode": confirmation.reason_code,
            "FinalConfirmationType": "X" if confirmation.final else "",
            "ExternalSystemConfirmation": external,
        }
        response = await self._write(CONFIRMATION_SERVICE, "ProdnOrdConf2", body)
        if response.status_code not in (200, 201):
            raise self._failure("POST", "ProdnOrdConf2", response)
        try:
            created = response.json()["d"]
            return f"{created['ConfirmationGroup']}/{created['ConfirmationCount']}"
        except (ValueError, KeyError, TypeError) as exc:
            raise ErpUnavailable("SAP answered the confirmation without its keys (no booking receipt)") from exc

    async def _post_notification(self, entry: OutboxEntry) -> str:
        """An SPC alarm as an OData V4 QualityNotification; looked up by its text (which carries the alarm id)
        before every post, because SAP assigns the notification number."""
        assert isinstance(entry.posting, SpcAlarmPosting)  # noqa: S101 - dispatched by post()
        record = entry.posting.record
        alarm = record.alarm
        text = notification_text(
            alarm.rule, alarm.order_no, alarm.operation_no, alarm.characteristic_id, record.alarm_id
        )
        url = f"{self._notification_root}/QualityNotification"
        response = await self._send("GET", url, params={"$filter": f"NotificationText eq {quote(text)}"})
        if response.status_code != 200:
            raise self._failure("GET", url, response)
        earlier = response.json().get("value", [])
        if earlier:
            _log.info("SPC alarm %s was notified before: not posted again", record.alarm_id)
            return str(earlier[0]["QualityNotification"])
        keys = await self._keys(alarm.order_no, alarm.operation_no)
        body = {
            "NotificationType": self._notification_type,
            "NotificationText": text,
            "NotificationPriority": notification_priority(alarm.severity),
            "NotifProcessingPhase": "1",
            "Material": self._materials.get(alarm.order_no, ""),
            "Plant": self._plant,
            "Batch": "",
            "InspectionLot": keys.lot,
        }
        response = await self._write(self._notification_root, "QualityNotification", body)
        if response.status_code not in (200, 201):
            raise self._failure("POST", "QualityNotification", response)
        try:
            return str(response.json()["QualityNotification"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ErpUnavailable("SAP answered the quality notification without its number") from exc


def notification_text(rule: str, order_no: str, operation_no: str, characteristic_id: str, alarm_id: str) -> str:
    """At most 40 characters (SAP's short text), ending in the alarm id's first 8 characters: the lookup key."""
    return f"SPC {rule} {order_no}/{operation_no}/{characteristic_id}"[:30] + f" #{alarm_id.replace('-', '')[:8]}"


def notification_priority(severity: int) -> str:
    """OPC UA severity 1..1000 → SAP priority 1 (very high) .. 4 (low)."""
    return "1" if severity >= 800 else "2" if severity >= 500 else "3" if severity >= 200 else "4"
