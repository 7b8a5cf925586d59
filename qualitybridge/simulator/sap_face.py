"""SAP S/4HANA face of the simulator: the OData V2 entity sets QualityBridge's SAP adapter uses, at SAP's paths.

`qualitybridge simulator --flavour sap` serves, next to the generic REST contract (kept as the QMS face: gauges and
SPC alarms), under `/sap/opu/odata/sap/`:

| service                             | entity sets                                                        |
| ----------------------------------- | ------------------------------------------------------------------ |
| `API_PRODUCTION_ORDER_2_SRV`        | `A_ProductionOrder_2`, `A_ProductionOrderOperation_2` (read)       |
| `API_INSPECTIONLOT_SRV`             | `A_InspectionLot`, `A_InspectionCharacteristic` (read),            |
|                                     | `A_InspectionResultValue` (POST; GET by key)                       |
| `API_PROD_ORDER_CONFIRMATION_2_SRV` | `ProdnOrdConf2` (POST; GET with `$filter`)                         |

The SAP entities are derived from the simulator's orders (`SimulatorState`), so `/sim/orders` releases, changes and
withdraws (here: closes) orders for both faces. Derived keys: `InspectionLot` = "01" + the order number padded to 10;
`OrderIntBillOfOperationsItem` = the operation's position (8 digits), `InspectionCharacteristic` = 10 × the
characteristic's position (4 digits). Units go out as SAP codes.

Like SAP Gateway it answers JSON (`{"d": {"results": [...], "__next": ...}}`), pages with `$top` and `$skiptoken`,
wants `X-CSRF-Token` on writes (tokens expire; `POST /sim/sap/csrf/expire` makes them expire now), refuses an
existing key with 400 and answers errors as OData error bodies. Faults from `/sim/faults` apply here too. What was
booked, and how often it was tried: `GET /sap/results`, `/sap/confirmations`, `/sap/stats`; every request line:
`GET /sap/requests`.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qualitybridge.domain.model import ProductionOrder
from qualitybridge.simulator.app import FaultInjection, create_app
from qualitybridge.simulator.odata_filter import FilterError, Node, index_values, matches, parse_filter
from qualitybridge.simulator.sap_wire import (
    CONFIRMATION_SERVICE,
    INSPECTION_LOT_SERVICE,
    ODATA_ROOT,
    ORDER_SERVICE,
    QUALITY_NOTIFICATION_ROOT,
    alpha_out,
    change_time,
    odata_error,
    quantity,
    sap_date,
    sap_time,
    sap_unit,
)
from qualitybridge.simulator.state import SimulatorState

__all__ = ["SapLedger", "create_sap_app"]

_SESSION_COOKIE = "SAP_SESSIONID_QB1_100"
_MAX_PAGE = 1000


def _odata_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content=odata_error(code, message))


def _odata4_response(status: int, code: str, message: str) -> JSONResponse:
    """OData V4 error body: the message is a plain string."""
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def _lot_of(order_no: str) -> str:
    return "01" + order_no.zfill(10)[-10:]


@dataclass
class _OrderEntities:
    header: dict[str, Any]
    operations: list[dict[str, Any]]
    lot: dict[str, Any]
    characteristics: list[dict[str, Any]]
    # (operation internal id, characteristic) → (operation_no, characteristic_id, decimals) for the booking check
    keys: dict[tuple[str, str], tuple[str, str]]


def _derive(order: ProductionOrder, released: bool, changed_at: datetime) -> _OrderEntities:
    lot = _lot_of(order.order_no)
    start = order.planned_start or changed_at
    end = order.planned_end or start
    header = {
        "__metadata": {"type": "API_PRODUCTION_ORDER_2_SRV.A_ProductionOrder_2Type"},
        "ManufacturingOrder": order.order_no,
        "ManufacturingOrderType": "PP01",
        "Material": order.material_no,
        "ProductionPlant": order.plant,
        "TotalQuantity": quantity(order.planned_quantity),
        "ProductionUnit": sap_unit(order.quantity_unit),
        "MfgOrderPlannedStartDate": sap_date(start),
        "MfgOrderPlannedStartTime": sap_time(start),
        "MfgOrderPlannedEndDate": sap_date(end),
        "MfgOrderPlannedEndTime": sap_time(end),
        "MfgOrderConfirmedYieldQty": "0",
        "OrderIsReleased": "X" if released else "",
        "OrderIsTechnicallyCompleted": "" if released else "X",
        "OrderIsClosed": "",
        "LastChangeDateTime": change_time(changed_at),
    }
    operations: list[dict[str, Any]] = []
    characteristics: list[dict[str, Any]] = []
    keys: dict[tuple[str, str], tuple[str, str]] = {}
    for position, operation in enumerate(order.operations, start=1):
        internal_id = f"{position:08d}"
        operations.append(
            {
                "ManufacturingOrder": order.order_no,
                "OrderInternalBillOfOperations": order.order_no.zfill(10)[-10:],
                "OrderIntBillOfOperationsItem": internal_id,
                "ManufacturingOrderOperation": operation.operation_no,
                "MfgOrderOperationText": operation.description,
                "WorkCenter": operation.work_centre,
                "OpPlannedTotalQuantity": quantity(order.planned_quantity),
                "OpTotalConfirmedYieldQty": "0",
                "LastChangeDateTime": change_time(changed_at),
            }
        )
        for index, characteristic in enumerate(operation.characteristics, start=1):
            number = f"{index * 10:04d}"
            keys[(internal_id, number)] = (operation.operation_no, characteristic.characteristic_id)
            characteristics.append(
                {
                    "InspectionLot": lot,
                    "InspPlanOperationInternalID": internal_id,
                    "InspectionCharacteristic": number,
                    "InspectionCharacteristicText": characteristic.name,
                    "InspSpecIsQuantitative": "X",
                    "InspSpecTargetValue": repr(characteristic.nominal),
                    "InspSpecLowerLimit": repr(characteristic.lower_limit),
                    "InspSpecUpperLimit": repr(characteristic.upper_limit),
                    "InspSpecDecimalPlaces": characteristic.decimal_places,
                    "InspectionSpecificationUnit": sap_unit(characteristic.unit),
                    "InspCharacteristicSampleSize": str(characteristic.sample_size),
                    "InspLotTestEquipInternalID": characteristic.gauge_type,
                }
            )
    lot_entity = {
        "InspectionLot": lot,
        "InspectionLotOrigin": "03",
        "ManufacturingOrder": order.order_no,
        "Material": order.material_no,
        "Batch": "",
        "InspectionLotQuantity": quantity(order.planned_quantity),
        "InspectionLotHasUsageDecision": False,
    }
    return _OrderEntities(header, operations, lot_entity, characteristics, keys)


@dataclass
class _Booked:
    key: str
    body: dict[str, Any]
    received_at: datetime
    posts: int = 1


@dataclass
class SapLedger:
    """What the SAP face booked and how often each booking was tried; CSRF tokens and derived entities."""

    csrf_lifetime_seconds: float = 1800.0
    results: dict[str, _Booked] = field(default_factory=dict)
    confirmations: dict[str, _Booked] = field(default_factory=dict)
    notifications: dict[str, _Booked] = field(default_factory=dict)
    duplicates_refused: int = 0
    csrf_refused: int = 0
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # session → (token, issued at)
    cache: dict[str, tuple[datetime, bool, _OrderEntities]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.results.clear()
            self.confirmations.clear()
            self.notifications.clear()
            self.duplicates_refused = self.csrf_refused = 0
            self.tokens.clear()


class _ExactDate:
    """ASGI middleware giving every answer the `Date` of the moment it is sent, as SAP Gateway does: the SAP adapter
    reads SAP's clock from it to place its watermark (uvicorn's own Date may lag by a second or more)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                headers.append((b"date", formatdate(usegmt=True).encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, dated)


class _RequestLog:
    """ASGI middleware recording each OData request line in the state (GET /sap/requests shows them)."""

    def __init__(self, app: ASGIApp, state: SimulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith("/sap/opu/"):
            query = scope.get("query_string", b"").decode("latin-1")
            self.state.record_request(f"{scope['method']} {scope['path']}{'?' + query if query else ''}")
        await self.app(scope, receive, send)


def create_sap_app(state: SimulatorState | None = None, *, ledger: SapLedger | None = None) -> FastAPI:
    """The REST simulator plus the SAP OData face on the same state."""
    sim = state if state is not None else SimulatorState()
    sap = ledger if ledger is not None else SapLedger()
    app = create_app(sim)
    app.state.sap = sap
    app.add_middleware(FaultInjection, state=sim, prefix=ODATA_ROOT, error=_odata_response)
    app.add_middleware(FaultInjection, state=sim, prefix="/sap/opu/odata4", error=_odata4_response)
    app.add_middleware(_RequestLog, state=sim)
    app.add_middleware(_ExactDate)

    def entities() -> list[_OrderEntities]:
        derived: list[_OrderEntities] = []
        with sap.lock:
            for order, released, changed_at in sim.order_history():
                cached = sap.cache.get(order.order_no)
                if cached is None or cached[0] != changed_at or cached[1] != released:
                    cached = (changed_at, released, _derive(order, released, changed_at))
                    sap.cache[order.order_no] = cached
                derived.append(cached[2])
        return derived

    def collection(request: Request, rows: Iterable[dict[str, Any]], indexed: str | None = None) -> Response:
        params = request.query_params
        try:
            node: Node | None = parse_filter(params["$filter"]) if params.get("$filter") else None
        except FilterError as exc:
            return _odata_response(400, "/IWBEP/CM_MGW_RT/022", f"Invalid filter: {exc}")
        candidates = list(rows)
        if node is not None and indexed is not None:
            wanted = index_values(node, indexed)
            if wanted is not None:
                candidates = [row for row in candidates if alpha_out(str(row[indexed])) in wanted]
        try:
            found = [row for row in candidates if node is None or matches(node, row)]
        except FilterError as exc:
            return _odata_response(400, "/IWBEP/CM_MGW_RT/022", str(exc))
        top = min(int(params.get("$top", _MAX_PAGE)), _MAX_PAGE)
        skip = int(params.get("$skiptoken", params.get("$skip", "0")))
        page = found[skip : skip + top]
        body: dict[str, Any] = {"results": page}
        if skip + top < len(found):
            body["__next"] = str(request.url.include_query_params(**{"$skiptoken": str(skip + top)}))
        return JSONResponse({"d": body})

    def session_of(request: Request) -> str | None:
        return request.cookies.get(_SESSION_COOKIE)

    def csrf_refusal(request: Request) -> Response | None:
        session = session_of(request)
        sent = request.headers.get("x-csrf-token", "")
        with sap.lock:
            issued = sap.tokens.get(session or "")
            valid = (
                issued is not None
                and secrets.compare_digest(issued[0], sent)
                and time.monotonic() - issued[1] < sap.csrf_lifetime_seconds
            )
            if valid:
                return None
            sap.csrf_refused += 1
        response = _odata_response(403, "/IWFND/CM_BEC/026", "CSRF token validation failed")
        response.headers["X-CSRF-Token"] = "Required"
        return response

    # ---- service roots and the CSRF handshake ---------------------------------------------------------

    @app.get(ODATA_ROOT + "/{service}/", include_in_schema=False)
    async def service_root(service: str, request: Request) -> Response:
        if service not in (ORDER_SERVICE, INSPECTION_LOT_SERVICE, CONFIRMATION_SERVICE):
            return _odata_response(404, "/IWFND/MED/170", f"No service found for namespace '', name '{service}'")
        return with_token(request, JSONResponse({"d": {"EntitySets": []}}))

    @app.get(QUALITY_NOTIFICATION_ROOT + "/", include_in_schema=False)
    async def notification_root(request: Request) -> Response:
        return with_token(request, JSONResponse({"value": [{"name": "QualityNotification", "kind": "EntitySet"}]}))

    def with_token(request: Request, response: Response) -> Response:
        if request.headers.get("x-csrf-token", "").lower() == "fetch":
            session = session_of(request) or secrets.token_hex(16)
            with sap.lock:
                # One token per session, as SAP Gateway does: fetching it for a second service returns the same.
                issued = sap.tokens.get(session)
                if issued is None or time.monotonic() - issued[1] >= sap.csrf_lifetime_seconds:
                    issued = (secrets.token_urlsafe(18), time.monotonic())
                    sap.tokens[session] = issued
                token = issued[0]
            response.headers["X-CSRF-Token"] = token
            response.set_cookie(_SESSION_COOKIE, session, httponly=True)
        return response

    @app.post("/sim/sap/csrf/expire", tags=["Simulation control"], status_code=204)
    async def expire_csrf_tokens() -> None:
        """Every CSRF token issued so far is refused from now on (as after a Gateway session timeout)."""
        with sap.lock:
            sap.tokens = {session: (token, float("-inf")) for session, (token, _at) in sap.tokens.items()}

    # ---- reading -----------------------------------------------------------------------------------------

    @app.get(f"{ODATA_ROOT}/{ORDER_SERVICE}/A_ProductionOrder_2", include_in_schema=False)
    async def orders(request: Request) -> Response:
        return collection(request, (item.header for item in entities()), "ManufacturingOrder")

    @app.get(f"{ODATA_ROOT}/{ORDER_SERVICE}/A_ProductionOrderOperation_2", include_in_schema=False)
    async def operations(request: Request) -> Response:
        rows = (op for item in entities() for op in item.operations)
        return collection(request, rows, "ManufacturingOrder")

    @app.get(f"{ODATA_ROOT}/{INSPECTION_LOT_SERVICE}/A_InspectionLot", include_in_schema=False)
    async def lots(request: Request) -> Response:
        return collection(request, (item.lot for item in entities()), "ManufacturingOrder")

    @app.get(f"{ODATA_ROOT}/{INSPECTION_LOT_SERVICE}/A_InspectionCharacteristic", include_in_schema=False)
    async def characteristics(request: Request) -> Response:
        wanted = None
        if request.query_params.get("$filter"):
            try:
                wanted = index_values(parse_filter(request.query_params["$filter"]), "InspectionLot")
            except FilterError:
                wanted = None
        known = entities()
        if wanted is not None:
            known = [item for item in known if alpha_out(str(item.lot["InspectionLot"])) in wanted]
        return collection(request, (row for item in known for row in item.characteristics))

    # ---- results --------------------------------------------------------------------------------------

    def result_key(body: dict[str, Any]) -> str:
        return "/".join(
            alpha_out(str(body.get(name, "")))
            for name in (
                "InspectionLot",
                "InspPlanOperationInternalID",
                "InspectionCharacteristic",
                "InspResultValueInternalID",
            )
        )

    @app.post(f"{ODATA_ROOT}/{INSPECTION_LOT_SERVICE}/A_InspectionResultValue", include_in_schema=False)
    async def post_result_value(request: Request) -> Response:
        refusal = csrf_refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        key = result_key(body)
        lot, op_id, characteristic, _value_id = key.split("/")
        owner = next((item for item in entities() if alpha_out(str(item.lot["InspectionLot"])) == lot), None)
        if owner is None or not owner.header["OrderIsReleased"]:
            return _odata_response(400, "QPLOT/002", f"Inspection lot {lot} does not exist or is not released")
        if (op_id.zfill(8), characteristic.zfill(4)) not in owner.keys:
            return _odata_response(
                400, "QT/150", f"Characteristic {characteristic} of operation {op_id} does not exist in lot {lot}"
            )
        if not str(body.get("InspResultFrmtdMeasuredValue", "")).strip():
            return _odata_response(400, "QT/400", "No measured value")
        with sap.lock:
            earlier = sap.results.get(key)
            if earlier is not None:
                earlier.posts += 1
                sap.duplicates_refused += 1
                return _odata_response(400, "QT/561", f"Result value {key} already exists")
            sap.results[key] = _Booked(key, dict(body), datetime.now(UTC))
        return JSONResponse(status_code=201, content={"d": {**body, "__metadata": {"type": "A_InspectionResultValue"}}})

    @app.get(f"{ODATA_ROOT}/{INSPECTION_LOT_SERVICE}/A_InspectionResultValue({{keys}})", include_in_schema=False)
    async def get_result_value(keys: str) -> Response:
        parts = dict(part.split("=", 1) for part in keys.split(",") if "=" in part)
        key = result_key({name: value.strip("'") for name, value in parts.items()})
        with sap.lock:
            booked = sap.results.get(key)
        if booked is None:
            return _odata_response(404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{key}'")
        return JSONResponse({"d": booked.body})

    # ---- confirmations ---------------------------------------------------------------------------------

    @app.get(f"{ODATA_ROOT}/{CONFIRMATION_SERVICE}/ProdnOrdConf2", include_in_schema=False)
    async def confirmations(request: Request) -> Response:
        with sap.lock:
            rows = [booked.body for booked in sap.confirmations.values()]
        return collection(request, rows)

    @app.post(f"{ODATA_ROOT}/{CONFIRMATION_SERVICE}/ProdnOrdConf2", include_in_schema=False)
    async def post_confirmation(request: Request) -> Response:
        refusal = csrf_refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        order_no = alpha_out(str(body.get("OrderID", "")))
        owner = next((item for item in entities() if alpha_out(item.header["ManufacturingOrder"]) == order_no), None)
        if owner is None or not owner.header["OrderIsReleased"]:
            return _odata_response(400, "RU/102", f"Order {order_no} does not exist or is not released")
        operation = str(body.get("OrderOperation", ""))
        position = next(
            (i for i, op in enumerate(owner.operations, 1) if op["ManufacturingOrderOperation"] == operation), None
        )
        if position is None:
            return _odata_response(400, "RU/105", f"Operation {operation} does not exist in order {order_no}")
        with sap.lock:
            group = f"{int(order_no) % 10**8 if order_no.isdigit() else len(sap.confirmations):08d}{position:02d}"
            count = 1 + sum(1 for booked in sap.confirmations.values() if booked.body["ConfirmationGroup"] == group)
            created = {**body, "ConfirmationGroup": group, "ConfirmationCount": f"{count:08d}"}
            created.setdefault("PostingDate", sap_date(datetime.now(UTC)))
            key = f"{group}/{count:08d}"
            sap.confirmations[key] = _Booked(key, created, datetime.now(UTC))
        return JSONResponse(status_code=201, content={"d": created})

    # ---- quality notifications (OData V4) ---------------------------------------------------------------

    @app.get(f"{QUALITY_NOTIFICATION_ROOT}/QualityNotification", include_in_schema=False)
    async def notifications(request: Request) -> Response:
        with sap.lock:
            rows = [booked.body for booked in sap.notifications.values()]
        answer = collection(request, rows)
        if answer.status_code != 200:
            return answer
        return JSONResponse({"value": json.loads(bytes(answer.body))["d"]["results"]})

    @app.post(f"{QUALITY_NOTIFICATION_ROOT}/QualityNotification", include_in_schema=False)
    async def post_notification(request: Request) -> Response:
        refusal = csrf_refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        if not body.get("NotificationType") or not str(body.get("NotificationText", "")).strip():
            return _odata4_response(400, "QM/001", "NotificationType and NotificationText are required")
        if len(str(body["NotificationText"])) > 40:
            return _odata4_response(400, "QM/002", "NotificationText is longer than 40 characters")
        with sap.lock:
            number = f"{200_000_001 + len(sap.notifications):012d}"
            created = {**body, "QualityNotification": number}
            sap.notifications[number] = _Booked(number, created, datetime.now(UTC))
        return JSONResponse(status_code=201, content=created)

    # ---- observation -----------------------------------------------------------------------------------

    def listed(booked: Iterable[_Booked]) -> list[dict[str, Any]]:
        return [
            {"key": item.key, "body": item.body, "received_at": item.received_at.isoformat(), "posts": item.posts}
            for item in booked
        ]

    @app.get("/sap/results", tags=["Observation"])
    async def booked_results() -> list[dict[str, Any]]:
        """A_InspectionResultValue bookings; `posts` > 1 means repeats were refused as existing keys."""
        with sap.lock:
            return listed(sap.results.values())

    @app.get("/sap/confirmations", tags=["Observation"])
    async def booked_confirmations() -> list[dict[str, Any]]:
        with sap.lock:
            return listed(sap.confirmations.values())

    @app.get("/sap/notifications", tags=["Observation"])
    async def booked_notifications() -> list[dict[str, Any]]:
        with sap.lock:
            return listed(sap.notifications.values())

    @app.get("/sap/stats", tags=["Observation"])
    async def sap_stats() -> dict[str, Any]:
        with sap.lock:
            counts = {
                "booked": {
                    "results": len(sap.results),
                    "confirmations": len(sap.confirmations),
                    "notifications": len(sap.notifications),
                },
                "duplicates_refused": sap.duplicates_refused,
                "csrf_refused": sap.csrf_refused,
            }
        return {**counts, "faults_injected": sim.stats()["faults_injected"]}

    @app.get("/sap/requests", tags=["Observation"])
    async def requests_seen() -> list[str]:
        """Every OData request line received (method, path and query), oldest first."""
        return sim.requests()

    @app.post("/sim/sap/reset", tags=["Simulation control"], status_code=204)
    async def reset_sap() -> None:
        """Forget SAP bookings and tokens (POST /sim/reset resets orders, faults and REST bookings)."""
        sap.reset()

    return app
