"""HTTP face of the ERP/QMS simulator: the generic contract v1 under /api/v1, plus control and observation endpoints.

/api/v1 is what a real ERP integration implements (docs/erp-rest-contract.md); only there are faults injected.
/sim/* lets a demo or a test act as the ERP's planners (release, change, withdraw orders; recalibrate gauges; make
the ERP unreliable). /results, /confirmations, /spc-alarms, /kpis and /stats show what the ERP booked, so tests can
prove that every posting arrived exactly once.

Run it with `qualitybridge simulator --host 127.0.0.1 --port 8081` or `python -m qualitybridge.simulator.app`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable, Coroutine, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic_core
import uvicorn
from fastapi import FastAPI, Header, Query, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qualitybridge.adapters.rest_contract import (
    API_PREFIX,
    CONTRACT_VERSION,
    IDEMPOTENCY_HEADER,
    BatchAnswer,
    BookingReceipt,
    CalibrationStatusName,
    ConfirmationDTO,
    EquipmentDTO,
    EquipmentPage,
    ErrorBody,
    ErrorDetail,
    KpiReportDTO,
    OrderDTO,
    OrdersPage,
    PostingBatch,
    ResultDTO,
    SpcAlarmDTO,
    equipment_to_dto,
    order_from_dto,
    order_to_dto,
)
from qualitybridge.collector import tune_collector
from qualitybridge.domain.model import CalibrationStatus, ProductionOrder
from qualitybridge.simulator.state import (
    BookingKind,
    FaultKind,
    FaultPlan,
    SimulatorError,
    SimulatorState,
)

logger = logging.getLogger(__name__)

TITLE = "QualityBridge generic ERP/QMS contract"
OPENAPI_DOCUMENT = Path("docs/erp-rest-contract.openapi.json")

_DESCRIPTION = (
    "The generic REST contract between QualityBridge and an ERP/QMS (version 1), served by QualityBridge's "
    "reference simulator. An ERP integration implements the paths under `/api/v1`; `/sim/*` and the observation "
    "paths exist only in the simulator. See docs/erp-rest-contract.md."
)
_ERP_TAG = "ERP contract v1"
_SIM_TAG = "Simulation control"
_OBSERVATION_TAG = "Observation"

IdempotencyKey = Annotated[
    str,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=255,
        description="Client-chosen key, unique per posting; a retry of the same posting sends the same key",
    ),
]

ChangedSince = Annotated[
    int | None,
    Query(ge=0, description="v1 addition: only what changed after this revision (a revision an earlier page gave)"),
]

_POSTING_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": BookingReceipt, "description": "Already booked under this key with the same body (a retry)"},
    400: {"model": ErrorBody, "description": "Idempotency-Key header missing, empty or longer than 255 characters"},
    409: {"model": ErrorBody, "description": "Idempotency-Key already used for a different body"},
    422: {"model": ErrorBody, "description": "Invalid body, or unknown order, operation or characteristic"},
    503: {"model": ErrorBody, "description": "ERP temporarily unavailable; retry with the same key"},
}


class RevisionAnswer(BaseModel):
    revision: int


class EquipmentPatch(BaseModel):
    calibration_status: CalibrationStatusName | None = None
    next_due: date | None = None
    last_calibration: date | None = None
    certificate_no: str | None = None


def _only_errors() -> list[FaultKind]:
    return ["error"]


class FaultSettings(BaseModel):
    rate: float = Field(ge=0, le=1, description="Probability that one /api/v1 request fails")
    kinds: list[FaultKind] = Field(default_factory=_only_errors, min_length=1)
    timeout_seconds: float = Field(default=5.0, ge=0, le=600, description="Delay of a 'timeout' fault")
    seed: int | None = Field(default=None, description="Seed for the fault dice, for reproducible runs")


class _BookedPosting(BaseModel):
    idempotency_key: str
    document_no: str
    received_at: datetime = Field(description="When the simulated ERP booked it")
    deliveries: int = Field(description="How often it was delivered; more than 1 means duplicates were suppressed")


class BookedResult(_BookedPosting):
    body: ResultDTO


class BookedConfirmation(_BookedPosting):
    body: ConfirmationDTO


class BookedSpcAlarm(_BookedPosting):
    body: SpcAlarmDTO


class BookedKpiReport(_BookedPosting):
    body: KpiReportDTO


class SimulatorStats(BaseModel):
    booked: dict[BookingKind, int]
    duplicates_suppressed: dict[BookingKind, int]
    duplicates_suppressed_total: int
    conflicts: dict[BookingKind, int]
    rejected: dict[BookingKind, int]
    faults_injected: dict[FaultKind, int]
    orders_revision: int
    equipment_revision: int


def _error(status_code: int, code: str, message: str) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message))
    return JSONResponse(status_code=status_code, content=body.model_dump())


class FaultInjection:
    """ASGI middleware making the ERP face (/api/v1, or the SAP face's OData root) unreliable in the ways a real ERP
    connection is; `error` builds the face's own error answer."""

    def __init__(
        self,
        app: ASGIApp,
        state: SimulatorState,
        prefix: str = API_PREFIX,
        error: Callable[[int, str, str], Response] | None = None,
    ) -> None:
        self.app = app
        self.state = state
        self.prefix = prefix
        self.error = error or _error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(self.prefix + "/"):
            await self.app(scope, receive, send)
            return
        fault = self.state.draw_fault()
        if fault is None:
            await self.app(scope, receive, send)
            return
        kind, timeout_seconds = fault
        logger.info("injecting fault %s into %s %s", kind, scope["method"], scope["path"])
        if kind == "timeout":
            # Then carry on: the client has probably given up, but the posting is still booked, as in real life.
            await asyncio.sleep(timeout_seconds)
            await self.app(scope, receive, send)
        elif kind == "error":
            await self.error(503, "unavailable", "injected fault: ERP temporarily unavailable")(scope, receive, send)
        else:

            async def discard(message: Message) -> None:
                del message

            # The posting is booked but its answer never reaches the client: the case idempotency keys exist for.
            await self.app(scope, receive, discard)
            await self.error(502, "bad_gateway", "injected fault: response lost")(scope, receive, send)


class _PostingBatchRoute(APIRoute):
    """POST /postings with its body validated from the request's JSON text in one pass by pydantic-core, not
    parsed by the standard library and validated from Python objects (FastAPI's way): a third of the simulator's
    CPU per posting of a batch. The OpenAPI document is the route's as declared; a body that does not validate is
    refused as FastAPI refuses it (RequestValidationError, located under "body")."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            try:
                batch = PostingBatch.model_validate_json(await request.body())
            except ValidationError as exc:
                errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
                raise RequestValidationError(errors) from exc
            answer: Response = await endpoint(batch)
            return answer

        return handler


def create_app(state: SimulatorState | None = None) -> FastAPI:
    """The simulator as an ASGI app; pass a state to inspect or pre-load it from a test."""
    sim = state if state is not None else SimulatorState()
    app = FastAPI(
        title=TITLE,
        version=CONTRACT_VERSION,
        description=_DESCRIPTION,
        openapi_tags=[
            {"name": _ERP_TAG, "description": "What an ERP/QMS integration implements for QualityBridge"},
            {"name": _SIM_TAG, "description": "Simulator only: act as the ERP's planners and make the ERP unreliable"},
            {"name": _OBSERVATION_TAG, "description": "Simulator only: what the ERP booked"},
        ],
    )
    app.state.simulator = sim
    app.add_middleware(FaultInjection, state=sim)
    _add_error_handlers(app)

    # ERP face, contract v1

    @app.get(f"{API_PREFIX}/orders", tags=[_ERP_TAG])
    async def list_orders(changed_since: ChangedSince = None) -> OrdersPage:
        """All orders currently released to the shop floor; an order missing from the list was withdrawn.

        With `changed_since` (v1 addition): only the orders released or changed after that revision, and in
        `withdrawn` the orders withdrawn after it.
        """
        if changed_since is None:
            revision, orders = sim.orders()
            return OrdersPage(revision=revision, orders=[order_to_dto(order) for order in orders])
        revision, orders, withdrawn = sim.orders_changed_since(changed_since)
        return OrdersPage(revision=revision, orders=[order_to_dto(order) for order in orders], withdrawn=withdrawn)

    @app.get(f"{API_PREFIX}/equipment", tags=[_ERP_TAG])
    async def list_equipment(changed_since: ChangedSince = None) -> EquipmentPage:
        """All test equipment with its calibration status; with `changed_since` only what changed after it."""
        if changed_since is None:
            revision, equipment = sim.equipment()
        else:
            revision, equipment = sim.equipment_changed_since(changed_since)
        return EquipmentPage(revision=revision, equipment=[equipment_to_dto(item) for item in equipment])

    async def post_batch(batch: PostingBatch) -> Response:
        """Book several postings in list order (v1 addition), each as its single path would, one outcome each.

        After a temporary failure of one posting, the later postings of the same order are not attempted (424),
        so an order's postings are never booked out of order; other orders go on.
        """
        # The outcomes as plain dicts in BatchOutcome's field order, the bodies booked as their models (the state
        # dumps them when they are read): a model per outcome and a model_dump per posting were half of the
        # simulator's CPU per booked posting.
        outcomes: list[dict[str, Any]] = []
        stopped: set[str] = set()
        for item in batch.postings:
            body = item.body
            order_no = body.order_no
            if order_no in stopped:
                message = f"an earlier posting of {order_no} failed"
                outcomes.append(_failed(item.idempotency_key, 424, "earlier_posting_failed", message))
                continue
            kind = _BATCH_KINDS[item.kind]
            try:
                document_no, duplicate = sim.book_plain(
                    kind,
                    item.idempotency_key,
                    body,
                    order_no=order_no,
                    operation_no=body.operation_no,
                    characteristic_id=None if isinstance(body, ConfirmationDTO) else body.characteristic_id,
                )
            except SimulatorError as exc:
                if exc.status_code >= 500:
                    stopped.add(order_no)
                outcomes.append(_failed(item.idempotency_key, exc.status_code, exc.code, exc.message))
                continue
            outcomes.append(
                {
                    "idempotency_key": item.idempotency_key,
                    "status": 200 if duplicate else 201,
                    "document_no": document_no,
                    "duplicate": duplicate,
                    "error": None,
                }
            )
        return Response(pydantic_core.to_json({"outcomes": outcomes}), media_type="application/json")

    app.router.add_api_route(
        f"{API_PREFIX}/postings",
        post_batch,
        methods=["POST"],
        tags=[_ERP_TAG],
        response_model=BatchAnswer,
        responses={503: {"model": ErrorBody}},
        route_class_override=_PostingBatchRoute,
    )

    @app.post(f"{API_PREFIX}/results", tags=[_ERP_TAG], status_code=201, responses=_POSTING_RESPONSES)
    async def post_result(result: ResultDTO, idempotency_key: IdempotencyKey, response: Response) -> BookingReceipt:
        """Book one judged measurement result."""
        receipt = sim.book(
            "results",
            idempotency_key,
            result.model_dump(mode="json"),
            order_no=result.order_no,
            operation_no=result.operation_no,
            characteristic_id=result.characteristic_id,
        )
        return _answer(receipt, response)

    @app.post(f"{API_PREFIX}/confirmations", tags=[_ERP_TAG], status_code=201, responses=_POSTING_RESPONSES)
    async def post_confirmation(
        confirmation: ConfirmationDTO, idempotency_key: IdempotencyKey, response: Response
    ) -> BookingReceipt:
        """Book an operation confirmation (yield, scrap, rework)."""
        receipt = sim.book(
            "confirmations",
            idempotency_key,
            confirmation.model_dump(mode="json"),
            order_no=confirmation.order_no,
            operation_no=confirmation.operation_no,
        )
        return _answer(receipt, response)

    @app.post(f"{API_PREFIX}/spc-alarms", tags=[_ERP_TAG], status_code=201, responses=_POSTING_RESPONSES)
    async def post_spc_alarm(alarm: SpcAlarmDTO, idempotency_key: IdempotencyKey, response: Response) -> BookingReceipt:
        """Book an SPC alarm (e.g. a Western Electric rule violation) as a quality notification."""
        receipt = sim.book(
            "spc_alarms",
            idempotency_key,
            alarm.model_dump(mode="json"),
            order_no=alarm.order_no,
            operation_no=alarm.operation_no,
            characteristic_id=alarm.characteristic_id,
        )
        return _answer(receipt, response)

    @app.post(f"{API_PREFIX}/quality-kpis", tags=[_ERP_TAG], status_code=201, responses=_POSTING_RESPONSES)
    async def post_kpis(report: KpiReportDTO, idempotency_key: IdempotencyKey, response: Response) -> BookingReceipt:
        """Book the quality KPIs of one period (a UTC day, or an order's life); sent once per period.

        Not checked against released orders: an ended order may have left the shop floor already.
        """
        receipt = sim.book("kpis", idempotency_key, report.model_dump(mode="json"), order_no=None, operation_no=None)
        return _answer(receipt, response)

    # simulation control

    @app.post("/sim/orders", tags=[_SIM_TAG], status_code=201)
    async def release_order(order: OrderDTO) -> RevisionAnswer:
        return RevisionAnswer(revision=sim.release_order(_to_domain(order)))

    @app.put("/sim/orders/{order_no}", tags=[_SIM_TAG])
    async def change_order(order_no: str, order: OrderDTO) -> RevisionAnswer:
        if order.order_no != order_no:
            raise SimulatorError("order_no_mismatch", f"path names order {order_no}, body order {order.order_no}")
        return RevisionAnswer(revision=sim.change_order(_to_domain(order)))

    @app.delete("/sim/orders/{order_no}", tags=[_SIM_TAG])
    async def withdraw_order(order_no: str) -> RevisionAnswer:
        return RevisionAnswer(revision=sim.withdraw_order(order_no))

    @app.patch("/sim/equipment/{equipment_id}", tags=[_SIM_TAG])
    async def update_equipment(equipment_id: str, patch: EquipmentPatch) -> EquipmentDTO:
        status_name = patch.calibration_status
        updated = sim.update_equipment(
            equipment_id,
            calibration_status=None if status_name is None else CalibrationStatus[status_name],
            next_due=patch.next_due,
            last_calibration=patch.last_calibration,
            certificate_no=patch.certificate_no,
        )
        return equipment_to_dto(updated)

    @app.put("/sim/faults", tags=[_SIM_TAG])
    async def set_faults(settings: FaultSettings) -> FaultSettings:
        sim.set_faults(FaultPlan(settings.rate, tuple(settings.kinds), settings.timeout_seconds, settings.seed))
        return settings

    @app.delete("/sim/faults", tags=[_SIM_TAG], status_code=204)
    async def clear_faults() -> None:
        sim.clear_faults()

    @app.post("/sim/reset", tags=[_SIM_TAG], status_code=204)
    async def reset() -> None:
        """Seed data again; no bookings, no faults, counters at zero."""
        sim.reset()

    # observation

    @app.get("/results", tags=[_OBSERVATION_TAG])
    async def booked_results() -> list[BookedResult]:
        return [BookedResult.model_validate(vars(item)) for item in sim.bookings("results")]

    @app.get("/confirmations", tags=[_OBSERVATION_TAG])
    async def booked_confirmations() -> list[BookedConfirmation]:
        return [BookedConfirmation.model_validate(vars(item)) for item in sim.bookings("confirmations")]

    @app.get("/spc-alarms", tags=[_OBSERVATION_TAG])
    async def booked_spc_alarms() -> list[BookedSpcAlarm]:
        return [BookedSpcAlarm.model_validate(vars(item)) for item in sim.bookings("spc_alarms")]

    @app.get("/kpis", tags=[_OBSERVATION_TAG])
    async def booked_kpis() -> list[BookedKpiReport]:
        return [BookedKpiReport.model_validate(vars(item)) for item in sim.bookings("kpis")]

    @app.get("/stats", tags=[_OBSERVATION_TAG])
    async def stats() -> SimulatorStats:
        return SimulatorStats.model_validate(sim.stats())

    return app


_BATCH_KINDS: dict[str, BookingKind] = {"result": "results", "confirmation": "confirmations", "spc_alarm": "spc_alarms"}


def _failed(idempotency_key: str, status_code: int, code: str, message: str) -> dict[str, Any]:
    """A BatchOutcome of a posting not booked, as its JSON."""
    error = {"code": code, "message": message}
    return {
        "idempotency_key": idempotency_key,
        "status": status_code,
        "document_no": None,
        "duplicate": False,
        "error": error,
    }


def _answer(receipt: BookingReceipt, response: Response) -> BookingReceipt:
    if receipt.duplicate:
        response.status_code = status.HTTP_200_OK
    return receipt


def _to_domain(order: OrderDTO) -> ProductionOrder:
    try:
        return order_from_dto(order)
    except ValidationError as exc:
        raise SimulatorError("invalid_order", str(exc)) from exc


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal carries the contract's error body {"error": {"code", "message"}}."""

    async def simulator_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SimulatorError)  # noqa: S101 - registered for this type only
        return _error(exc.status_code, exc.code, exc.message)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
        errors = exc.errors()
        header_errors = [e for e in errors if tuple(e.get("loc", ())) == ("header", IDEMPOTENCY_HEADER)]
        if any(error.get("type") == "missing" for error in header_errors):
            return _error(400, "missing_idempotency_key", f"the {IDEMPOTENCY_HEADER} header is required")
        if header_errors:
            return _error(
                400,
                "invalid_idempotency_key",
                f"the {IDEMPOTENCY_HEADER} header must be 1 to 255 characters: {header_errors[0].get('msg')}",
            )
        details = "; ".join(f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg')}" for e in errors)
        return _error(422, "invalid_request", details)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type only
        code = "not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
        return _error(exc.status_code, code, str(exc.detail))

    app.add_exception_handler(SimulatorError, simulator_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


class _Server(uvicorn.Server):
    """uvicorn's server, taking over SIGINT/SIGTERM only when asked (not when embedded in a test's loop)."""

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool) -> None:
        super().__init__(config)
        self._handle_signals = handle_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:
            yield


def _bind(host: str, port: int) -> socket.socket:
    # Binding here rather than in uvicorn turns "address in use" into an OSError instead of uvicorn's sys.exit,
    # and lets port 0 work: the log line shows the port the system chose.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family)
    # asyncio turns Nagle off only for sockets whose proto is IPPROTO_TCP, and create_server leaves proto 0; without
    # this every keep-alive answer waited ~40 ms for the client's delayed ACK. Accepted sockets inherit the option.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener


Flavour = Literal["rest", "sap"]


async def serve(
    host: str,
    port: int,
    *,
    state: SimulatorState | None = None,
    started: asyncio.Event | None = None,
    handle_signals: bool = False,
    flavour: Flavour = "rest",
) -> None:
    """Serve the simulator in the running loop until cancelled (or, with handle_signals, until SIGINT/SIGTERM).

    `flavour="sap"` adds the SAP S/4HANA OData face (`qualitybridge.simulator.sap_face`) to the REST one.
    """
    if flavour == "sap":
        from qualitybridge.simulator.sap_face import create_sap_app

        app = create_sap_app(state)
    else:
        app = create_app(state)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        # uvicorn's Date is refreshed once a second by its loop; the SAP face sets an exact one itself.
        date_header=flavour != "sap",
    )
    server = _Server(config, handle_signals=handle_signals)
    sock = _bind(host, port)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if serving.done():
                break
            await asyncio.sleep(0.01)
        else:
            bound_host, bound_port = sock.getsockname()[:2]
            url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
            logger.info("ERP/QMS simulator ready at http://%s:%d (OpenAPI at /openapi.json)", url_host, bound_port)
            if started is not None:
                started.set()
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        await serving
        raise
    finally:
        sock.close()


def run(host: str, port: int, flavour: Flavour = "rest") -> None:
    """Blocking entry point for `qualitybridge simulator`; stops on Ctrl+C."""
    tune_collector()  # it keeps every booking: a heap that grows as long as it runs
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, port, handle_signals=True, flavour=flavour))


def openapi_document() -> dict[str, Any]:
    return create_app().openapi()


def write_openapi(path: Path) -> None:
    path.write_text(json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qualitybridge.simulator.app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--write-openapi", type=Path, metavar="PATH", help="write the OpenAPI document and exit")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if arguments.write_openapi is not None:
        write_openapi(arguments.write_openapi)
        logger.info("wrote %s", arguments.write_openapi)
        return
    run(arguments.host, arguments.port)


if __name__ == "__main__":
    main()
