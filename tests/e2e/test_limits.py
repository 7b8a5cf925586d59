"""Limits against abuse, through a real `qualitybridge serve` process with low limits and real OPC UA clients.

Each limit is exceeded once and must answer its standard Bad code. The flood test then runs a separate flooding
process (sessions, subscriptions, monitored items and requests, all past their limits) while this process keeps
reporting measurements as a well-behaved machine would, and checks the server's memory (VmRSS) before, during and
after. The pure parts (token bucket, login throttle, configuration) are tested without a server, in
tests/unit/test_limit_rules.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import statistics
import struct
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.uaerrors import UaStatusCodeError

from tests.builders import VALID_GAUGE, first_characteristic, node, report
from tests.harness import (
    CLIENT_URI,
    NAMESPACE_URI,
    TEST_USERS,
    ClientCertificate,
    Deployment,
    cpu_ticks,
    secure_session,
    unmeasured_environment,
)

MAX_SESSIONS = 8
SUBSCRIPTIONS_PER_SESSION = 3
ITEMS_PER_SUBSCRIPTION = 20
ITEMS_PER_SESSION = 50
OPERATIONS_PER_REQUEST = 100
MESSAGE_SIZE = 256 * 1024
REQUESTS_PER_SECOND = 50
BURST = 50
SESSION_TIMEOUT = 10
PENALTY_BASE = 0.5
PENALTY_MAX = 2.0

LIMITS_TOML = f"""
[limits]
max_sessions = {MAX_SESSIONS}
max_session_timeout_seconds = {SESSION_TIMEOUT}
max_subscriptions_per_session = {SUBSCRIPTIONS_PER_SESSION}
max_monitored_items_per_subscription = {ITEMS_PER_SUBSCRIPTION}
max_monitored_items_per_session = {ITEMS_PER_SESSION}
max_operations_per_request = {OPERATIONS_PER_REQUEST}
max_message_size = {MESSAGE_SIZE}
max_requests_per_second = {REQUESTS_PER_SECOND}
request_burst = {BURST}
login_penalty_base_seconds = {PENALTY_BASE}
login_penalty_max_seconds = {PENALTY_MAX}
"""

ORDER = "1000418"
STATE = ua.NodeId(ua.ObjectIds.Server_ServerStatus_State)
START_TIME = ua.NodeId(ua.ObjectIds.Server_ServerStatus_StartTime)
CURRENT_TIME = ua.NodeId(ua.ObjectIds.Server_ServerStatus_CurrentTime)
# The flood has a fixed size, set by counts, not by the clock, so a busy machine makes it slower, not larger or
# smaller (it took 77-274 s when it ran until the reporting client had reported for long enough). Requests flood in
# FLOOD_STEPS steps of ROUNDS_PER_STEP rounds of REQUESTS_PER_ROUND pipelined requests; the reporting client makes one
# report per step while the next step floods (the flooder waits when it is a step ahead of the reports), so its
# MIN_REPORTS_DURING_FLOOD reports are made during the flood however the two share the machine. Beside them, the
# subscriptions, sessions and oversized-chunk floods each take their fixed number of turns. A kind that has not yet
# drawn one of its required refusals by then goes on until it has (a rate limit refuses only what comes faster than
# its rate), up to FLOOD_ACTION_BUDGET actions in all; the test then names what was missing. More than
# MIN_FLOOD_ACTIONS actions in all (about 4,400 by these counts) give the memory check its meaning.
MIN_FLOOD_ACTIONS = 4000
FLOOD_STEPS = 60
MIN_REPORTS_DURING_FLOOD = FLOOD_STEPS
ROUNDS_PER_STEP = 1
REQUESTS_PER_ROUND = 40
# Rounds of 5 subscriptions asked for, 3 of them with 30 items each (about 95 actions when none is rate-limited),
# until this many actions: counted in actions, not rounds, because a round's size depends on the machine (on a fast
# one more subscription requests are refused by the rate limit, and a refused subscription asks for no items: 20
# rounds then came to ~1,260 actions instead of ~1,900 and the flood stayed under MIN_FLOOD_ACTIONS).
SUBSCRIPTION_ACTIONS = 1900
SESSION_ATTEMPTS = 16
CHUNK_CONNECTIONS = 60
FLOOD_ACTION_BUDGET = 25 * MIN_FLOOD_ACTIONS
# A guard against a hung flooder, not a verdict on speed: the longest the test waits for one step.
STEP_TIMEOUT_SECONDS = 120.0
REPORTS_BEFORE_AND_AFTER = 20  # reports before the flood (the same figure without a flood, for the message) and after
# The flooder runs at the same CPU priority as everything else. It once ran at nice 10, when the verdict on the
# reporting client was its wall-clock latency; with the verdict in the server's CPU time (below) that protected
# nothing, and in a busy suite a niced flooder got so little CPU that one step outlasted STEP_TIMEOUT_SECONDS (the
# test took 134-234 s of the suite's wall time, and failed once, on a machine 1.7x slower than the one it was tuned
# on). Its own code is test code, so coverage does not trace it (unmeasured_environment): Python 3.11's tracer
# slowed its asyncua client 2-5x for nothing to measure.
# "Promptly": while a report of the reporting client waits for its answer, the server spends under
# SERVER_CPU_BOUND_SECONDS of its own CPU time (p95 over the reports during the flood) on anything else, the flood
# first. That is what the server controls: how much other work it puts before a legitimate request. On the reference
# machine, where the server has a core to itself, it is the former bound of 1 s latency; counted in the server's CPU
# instead of wall time, a machine busy with other work does not change it (a starved server takes longer in wall
# time but does no more work before the answer), while a server that serves the flood first still fails it.
SERVER_CPU_BOUND_SECONDS = 1.0
REPO_ROOT = Path(__file__).resolve().parents[2]

e2e = pytest.mark.slow


# ---------------------------------------------------------------------------------------------------------------
# A real server with low limits


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("limits")
    running = Deployment(
        root, "sqlite", f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}", extra_config=LIMITS_TOML
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


def status_of(error: BaseException) -> int | None:
    return error.code if isinstance(error, UaStatusCodeError) else None


async def open_client(deployment: Deployment, user: str = "machine1", password: str | None = None) -> Client:
    """Like harness.secure_session, without the one-second watchdog: a flooder's own probe waits behind its flood."""
    assert deployment.client_certificate is not None
    client = Client(deployment.endpoint, timeout=10, watchdog_intervall=60)
    client.application_uri = CLIENT_URI
    client.set_user(user)
    client.set_password(password if password is not None else TEST_USERS[user][1])
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        str(deployment.client_certificate.cert),
        str(deployment.client_certificate.key),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    await client.connect()
    return client


@contextlib.asynccontextmanager
async def sessions(deployment: Deployment, count: int) -> AsyncIterator[list[Client]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(deployment.session("observer")) for _ in range(count)]


class NoHandler:
    def datachange_notification(self, *_args: Any) -> None:
        pass

    def status_change_notification(self, *_args: Any) -> None:
        pass


@e2e
async def test_limits_are_published_in_server_capabilities(deployment: Deployment) -> None:
    async with deployment.session("observer") as client:

        async def capability(object_id: int) -> Any:
            return await client.get_node(ua.NodeId(object_id)).read_value()

        ids = ua.ObjectIds
        assert await capability(ids.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead) == OPERATIONS_PER_REQUEST
        assert await capability(ids.Server_ServerCapabilities_OperationLimits_MaxNodesPerMethodCall) == (
            OPERATIONS_PER_REQUEST
        )
        assert await capability(ids.Server_ServerCapabilities_MaxSessions) == MAX_SESSIONS
        assert await capability(ids.Server_ServerCapabilities_MaxSubscriptionsPerSession) == SUBSCRIPTIONS_PER_SESSION
        assert await capability(ids.Server_ServerCapabilities_MaxMonitoredItemsPerSubscription) == (
            ITEMS_PER_SUBSCRIPTION
        )


@e2e
async def test_one_session_too_many_gets_bad_too_many_sessions(deployment: Deployment) -> None:
    async with sessions(deployment, MAX_SESSIONS) as clients:
        with pytest.raises(UaStatusCodeError) as refused:
            async with deployment.session("observer"):
                pass
        assert status_of(refused.value) == ua.StatusCodes.BadTooManySessions
        assert await clients[0].get_node(STATE).read_value() == ua.ServerState.Running
    # Closing sessions gives their places back.
    async with sessions(deployment, MAX_SESSIONS):
        pass


@e2e
async def test_subscriptions_and_monitored_items_past_their_limits(deployment: Deployment) -> None:
    async with deployment.session("observer") as client:
        subscriptions = [await client.create_subscription(500, NoHandler()) for _ in range(SUBSCRIPTIONS_PER_SESSION)]
        with pytest.raises(UaStatusCodeError) as refused:
            await client.create_subscription(500, NoHandler())
        assert status_of(refused.value) == ua.StatusCodes.BadTooManySubscriptions

        # Per subscription: the items that fit are created, the rest answered per item.
        nodes = [client.get_node(CURRENT_TIME)] * (ITEMS_PER_SUBSCRIPTION + 3)
        first = await subscriptions[0].subscribe_data_change(nodes)
        assert all(isinstance(handle, int) for handle in first[:ITEMS_PER_SUBSCRIPTION])
        assert [s.value for s in first[ITEMS_PER_SUBSCRIPTION:]] == [ua.StatusCodes.BadTooManyMonitoredItems] * 3

        # Per session: 50 in all, so the second subscription gets 20 and the third only 10.
        second = await subscriptions[1].subscribe_data_change(nodes[:ITEMS_PER_SUBSCRIPTION])
        third = await subscriptions[2].subscribe_data_change(nodes[:ITEMS_PER_SUBSCRIPTION])
        assert all(isinstance(handle, int) for handle in second)
        room = ITEMS_PER_SESSION - 2 * ITEMS_PER_SUBSCRIPTION
        assert all(isinstance(handle, int) for handle in third[:room])
        assert [s.value for s in third[room:]] == [ua.StatusCodes.BadTooManyMonitoredItems] * (
            ITEMS_PER_SUBSCRIPTION - room
        )

        # Deleting gives room back (and is allowed even for a session at its limits).
        await subscriptions[2].delete()
        replacement = await client.create_subscription(500, NoHandler())
        assert all(isinstance(h, int) for h in await replacement.subscribe_data_change(nodes[:room]))


@e2e
async def test_a_session_cannot_touch_another_sessions_subscriptions(deployment: Deployment) -> None:
    async with deployment.session("observer") as owner, deployment.session("observer") as intruder:
        subscription = await owner.create_subscription(500, NoHandler())
        foreign_id = subscription.subscription_id
        results = await intruder.uaclient.delete_subscriptions([foreign_id])
        assert [r.value for r in results] == [ua.StatusCodes.BadSubscriptionIdInvalid]
        parameters = ua.CreateMonitoredItemsParameters(
            SubscriptionId=foreign_id,
            ItemsToCreate=[
                ua.MonitoredItemCreateRequest(
                    ItemToMonitor=ua.ReadValueId(NodeId=CURRENT_TIME, AttributeId=ua.AttributeIds.Value),
                    MonitoringMode=ua.MonitoringMode.Reporting,
                    RequestedParameters=ua.MonitoringParameters(ClientHandle=1, SamplingInterval=500, QueueSize=1),
                )
            ],
        )
        with pytest.raises(UaStatusCodeError) as refused:
            await intruder.uaclient.create_monitored_items(parameters)
        assert status_of(refused.value) == ua.StatusCodes.BadSubscriptionIdInvalid
        # Still the owner's, and still working.
        assert isinstance(await subscription.subscribe_data_change(owner.get_node(CURRENT_TIME)), int)


@e2e
async def test_too_many_operations_in_one_request(deployment: Deployment) -> None:
    async with deployment.session("observer") as client:
        state = client.get_node(START_TIME)
        assert len(await client.read_values([state] * OPERATIONS_PER_REQUEST)) == OPERATIONS_PER_REQUEST
        with pytest.raises(UaStatusCodeError) as refused:
            await client.read_values([state] * (OPERATIONS_PER_REQUEST + 1))
        assert status_of(refused.value) == ua.StatusCodes.BadTooManyOperations


@e2e
async def test_request_rate_per_session(deployment: Deployment) -> None:
    client = await open_client(deployment, "observer")
    try:
        await asyncio.sleep(BURST / REQUESTS_PER_SECOND)  # a full bucket
        node_ = client.get_node(START_TIME)
        outcomes = await asyncio.gather(*(node_.read_value() for _ in range(BURST + 30)), return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        assert {status_of(o) for o in refused} == {ua.StatusCodes.BadResourceUnavailable}
        assert BURST <= len(outcomes) - len(refused) < BURST + 30
        # The keep-alive read of ServerStatus.State is never refused, or clients would drop their session.
        assert await client.get_node(STATE).read_value() == ua.ServerState.Running
        await asyncio.sleep(5 / REQUESTS_PER_SECOND)
        assert await node_.read_value() is not None, "the bucket refills"
        async with deployment.session("observer") as other:
            assert await other.get_node(START_TIME).read_value() is not None, "other sessions have their own bucket"
    finally:
        await client.disconnect()


@e2e
async def test_request_larger_than_max_message_size(deployment: Deployment) -> None:
    async with deployment.session("machine1") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        with pytest.raises(UaStatusCodeError) as refused:
            await node(client, idx, "QualityBridge").call_method(
                ua.NodeId("QualityBridge.ReportMeasurement", idx),
                "x" * (MESSAGE_SIZE + 1024),
                "0010",
                "C1",
                1.0,
                VALID_GAUGE,
                "SN",
                datetime.now(UTC),
                "",
            )
        assert status_of(refused.value) == ua.StatusCodes.BadRequestTooLarge
    # The server closed that connection only; it keeps serving.
    async with deployment.session("observer") as client:
        assert await client.get_node(STATE).read_value() == ua.ServerState.Running


def _tcp_message(message_type: bytes, body: bytes) -> bytes:
    return message_type + b"F" + struct.pack("<I", 8 + len(body)) + body


@e2e
def test_oversized_chunk_header_is_refused_before_its_bytes_are_buffered(deployment: Deployment) -> None:
    hello = struct.pack("<IIIII", 0, 65535, 65535, 0, 0) + struct.pack("<i", len(deployment.endpoint))
    with socket.create_connection(("127.0.0.1", deployment.opcua_port), timeout=5) as sock:
        sock.sendall(_tcp_message(b"HEL", hello + deployment.endpoint.encode()))
        assert sock.recv(4096)[:3] == b"ACK"
        # Announce 100 MB, send only the first kilobyte: asyncua alone would wait for (and keep) all of it.
        sock.sendall(b"MSGF" + struct.pack("<I", 100_000_000) + bytes(1024))
        answer = sock.recv(4096)
        assert answer[:4] == b"ERRF"
        assert struct.unpack("<I", answer[8:12])[0] == ua.StatusCodes.BadTcpMessageTooLarge
        assert sock.recv(4096) == b"", "the server closes the connection"


# ---------------------------------------------------------------------------------------------------------------
# The flood


def server_rss_kib(deployment: Deployment) -> int:
    assert deployment.server is not None
    assert deployment.server.process is not None
    status = Path(f"/proc/{deployment.server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1])


class FloodPlan:
    """The flood's fixed counts, the lockstep of its request steps with the reporting client's reports, and what it
    has shown: every limit refused at least once, more than MIN_FLOOD_ACTIONS actions."""

    REQUIRED: ClassVar[dict[str, tuple[str, ...]]] = {
        "sessions": ("BadTooManySessions",),
        "subscriptions": ("BadTooManySubscriptions", "BadTooManyMonitoredItems"),
        "requests": ("BadResourceUnavailable", "BadTooManyOperations"),
        "chunks": ("BadTcpMessageTooLarge",),
    }

    def __init__(self, tallies: dict[str, Counter[str]]) -> None:
        self.tallies = tallies
        self.started = time.monotonic()
        self._reports: asyncio.Queue[str] = asyncio.Queue()

    def actions(self) -> int:
        return sum(sum(tally.values()) for tally in self.tallies.values())

    def missing(self) -> list[str]:
        missing = [
            f"{kind}: {code}" for kind, codes in self.REQUIRED.items() for code in codes if not self.tallies[kind][code]
        ]
        actions = self.actions()
        if actions <= MIN_FLOOD_ACTIONS:
            missing.append(f"more than {MIN_FLOOD_ACTIONS} actions (took {actions})")
        return missing

    def done(self, kind: str, turns: int, quota: int) -> bool:
        """A kind is done after its quota of turns once it has drawn its required refusals, or when the whole
        flood's action budget is spent."""
        if self.actions() >= FLOOD_ACTION_BUDGET:
            return True
        return turns >= quota and all(self.tallies[kind][code] for code in self.REQUIRED[kind])

    async def listen(self) -> None:
        """Takes the test's line after each report it made (stdin); an empty one when the test has gone."""
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            self._reports.put_nowait(line)
            if not line:
                return

    async def reported(self) -> None:
        """Waits for the reporting client's next report."""
        if not await self._reports.get():
            raise RuntimeError("the test stopped listening to the flood")


async def _flood_requests(client: Client, idx: int, plan: FloodPlan, tally: Counter[str]) -> None:
    """Pipelined reads, browses, method calls with unknown orders and oversized reads, as fast as answers come, in
    FLOOD_STEPS steps: after each the test makes a report, while the next step floods."""
    start_time = client.get_node(START_TIME)
    root = client.get_node(ua.NodeId("QualityBridge", idx))
    method = ua.NodeId("QualityBridge.ReportMeasurement", idx)
    now = datetime.now(UTC)

    async def one(kind: int) -> Any:
        match kind % 4:
            case 0:
                return await start_time.read_value()
            case 1:
                return await root.get_children()
            case 2:
                return await root.call_method(method, "0000000", "0010", "C1", 1.0, VALID_GAUGE, "SN", now, "")
            case _:
                return await client.read_values([start_time] * (OPERATIONS_PER_REQUEST + 1))

    async def flood_round() -> None:
        for outcome in await asyncio.gather(*(one(k) for k in range(REQUESTS_PER_ROUND)), return_exceptions=True):
            tally[_outcome_name(outcome)] += 1

    for step in range(1, FLOOD_STEPS + 1):
        for _ in range(ROUNDS_PER_STEP):
            await flood_round()
        print("step", flush=True)
        if step > 1:
            await plan.reported()  # the report beside the step before: never more than a step ahead
    await plan.reported()  # the report beside the last step
    rounds = FLOOD_STEPS * ROUNDS_PER_STEP
    while not plan.done("requests", rounds, rounds):
        await flood_round()
        rounds += 1


async def _flood_subscriptions(client: Client, plan: FloodPlan, tally: Counter[str]) -> None:
    """More subscriptions than allowed, each with more items than allowed; deleted and created again."""
    nodes = [client.get_node(CURRENT_TIME)] * (ITEMS_PER_SUBSCRIPTION + 10)
    while True:
        created = []
        for _ in range(SUBSCRIPTIONS_PER_SESSION + 2):
            try:
                created.append(await client.create_subscription(50, NoHandler()))
                tally["subscription created"] += 1
            except UaStatusCodeError as error:
                tally[_outcome_name(error)] += 1
        for subscription in created:
            try:
                for handle in await subscription.subscribe_data_change(nodes):
                    tally["item created" if isinstance(handle, int) else _outcome_name(handle)] += 1
            except UaStatusCodeError as error:
                tally[_outcome_name(error)] += 1
        # The last round stays: the flooder vanishes with its subscriptions and the server must clean up alone.
        if plan.done("subscriptions", sum(tally.values()), SUBSCRIPTION_ACTIONS):
            return
        for subscription in created:
            try:
                await subscription.delete()
            except UaStatusCodeError as error:
                tally[_outcome_name(error)] += 1


async def _flood_sessions(deployment: Deployment, plan: FloodPlan, tally: Counter[str]) -> list[Client]:
    held: list[Client] = []
    attempts = 0
    while not plan.done("sessions", attempts, SESSION_ATTEMPTS):
        attempts += 1
        try:
            held.append(await open_client(deployment, "observer"))
            tally["session opened"] += 1
        except Exception as error:
            tally[_outcome_name(error)] += 1
            for client in held[: len(held) // 2]:
                with contextlib.suppress(Exception):
                    await client.disconnect()
            held = held[len(held) // 2 :]
    return held


async def _flood_oversized_chunks(port: int, endpoint: str, plan: FloodPlan, tally: Counter[str]) -> None:
    """Connections announcing 50 MB chunks and streaming bytes: without the guard each would be buffered whole."""
    hello = struct.pack("<IIIIIi", 0, 65535, 65535, 0, 0, len(endpoint)) + endpoint.encode()
    filler = bytes(64 * 1024)
    connections = 0
    while not plan.done("chunks", connections, CHUNK_CONNECTIONS):
        connections += 1
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_tcp_message(b"HEL", hello))
            await reader.read(4096)
            writer.write(b"MSGF" + struct.pack("<I", 50_000_000))
            for _ in range(16):  # up to 1 MiB, or until the server hangs up
                writer.write(filler)
                await writer.drain()
            answer = await asyncio.wait_for(reader.read(4096), 5)
            tally[_outcome_name(ua.StatusCode(ua.UInt32(struct.unpack("<I", answer[8:12])[0])))] += 1
        except (OSError, asyncio.IncompleteReadError, struct.error, TimeoutError) as error:
            tally[type(error).__name__] += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _outcome_name(outcome: Any) -> str:
    if isinstance(outcome, UaStatusCodeError | ua.StatusCode):
        code = outcome.code if isinstance(outcome, UaStatusCodeError) else outcome.value
        return str(ua.status_codes.get_name_and_doc(code)[0])
    if isinstance(outcome, BaseException):
        return type(outcome).__name__
    return "Good"


async def _flood(deployment: Deployment, result_path: Path) -> None:
    requests_client = await open_client(deployment, "machine1")
    subscriptions_client = await open_client(deployment, "observer")
    idx = await requests_client.get_namespace_index(NAMESPACE_URI)
    tallies: dict[str, Counter[str]] = {kind: Counter() for kind in ("requests", "subscriptions", "sessions", "chunks")}
    plan = FloodPlan(tallies)

    print("flooding", flush=True)
    # Its thread blocks in a read of stdin until the test's next line; os._exit below does not wait for it.
    listening = asyncio.create_task(plan.listen())
    await asyncio.gather(
        _flood_requests(requests_client, idx, plan, tallies["requests"]),
        _flood_subscriptions(subscriptions_client, plan, tallies["subscriptions"]),
        _flood_sessions(deployment, plan, tallies["sessions"]),
        _flood_oversized_chunks(deployment.opcua_port, deployment.endpoint, plan, tallies["chunks"]),
    )
    listening.cancel()
    summary = {
        "tallies": {kind: dict(tally) for kind, tally in tallies.items()},
        "seconds": round(time.monotonic() - plan.started, 1),
        "missing": plan.missing(),
    }
    await asyncio.to_thread(result_path.write_text, json.dumps(summary))
    # Vanish without closing anything, as a crashed or hostile client does: the server has to clean up alone.
    os._exit(0)


def run_flooder(arguments: list[str]) -> None:
    """Entry point of the flooding child process: <deployment root> <opcua port> <result file>."""
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)  # refusals are the point; the tally counts them
    root, port, result = arguments
    flooder = Deployment(Path(root), "sqlite", "", opcua_port=int(port))
    flooder.client_certificate = ClientCertificate(
        Path(root) / "client" / "client.der", Path(root) / "client" / "client.pem"
    )
    asyncio.run(_flood(flooder, Path(result)))


async def _reportable_gauge(client: Client, deployment: Deployment, idx: int, key: tuple[str, str, str]) -> str:
    """A gauge ReportMeasurement accepts for `key`, starting the order first if measurements need that.

    Independent of how the master data evolves: the gauge must fit the characteristic and be calibrated, and
    the order may have to be Running (StartOrder, a quality engineer's method).
    """
    equipment = await node(client, idx, "QualityBridge.TestEquipment").get_children()
    candidates = [VALID_GAUGE] + [str(g.nodeid.Identifier).rsplit("/", 1)[-1] for g in equipment]
    order_started = False
    for gauge in candidates:
        for _attempt in range(2):
            try:
                await report(client, idx, key, 1.0, gauge=gauge)
            except UaStatusCodeError as error:
                if error.code == ua.StatusCodes.BadInvalidState and not order_started:
                    order_started = True
                    async with deployment.session("quality") as quality:
                        with contextlib.suppress(UaStatusCodeError):
                            await node(quality, idx, "QualityBridge").call_method(
                                ua.NodeId("QualityBridge.StartOrder", idx), key[0]
                            )
                    continue
                break
            return gauge
    raise AssertionError(f"no gauge of {candidates} is accepted for {key}")


@e2e
async def test_flood_past_all_limits_leaves_another_client_reporting_and_memory_returns(
    deployment: Deployment, tmp_path: Path
) -> None:
    result_path = tmp_path / "flood.json"
    # The reporting machine's verdict is its reports: each must be answered Good (within the request timeout) and
    # promptly. Not asyncua's one-second keep-alive probe in the background, which on a starved machine gives up
    # on a connection that is merely slow and turns every later report into a ConnectionError.
    # Its session is kept alive as asyncua's watchdog would (the server's session timeout is 10 s, and the test
    # waits longer than that for the flooder to start and for the flooder's sessions to expire).
    async with contextlib.AsyncExitStack() as stack:
        machine = await open_client(deployment, "machine1")
        stack.push_async_callback(machine.disconnect)

        async def keep_alive() -> None:
            while True:
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await machine.get_node(STATE).read_value()

        keeping_alive = asyncio.create_task(keep_alive())
        stack.callback(keeping_alive.cancel)
        idx = await machine.get_namespace_index(NAMESPACE_URI)
        key = await first_characteristic(machine, idx, ORDER)
        gauge = await _reportable_gauge(machine, deployment, idx, key)

        rss_samples: list[int] = []

        assert deployment.server is not None
        assert deployment.server.process is not None
        server_pid = deployment.server.process.pid
        ticks_per_second = os.sysconf("SC_CLK_TCK")

        async def make_reports(count: int) -> tuple[tuple[list[float], list[float]], Counter[str]]:
            """`count` reports, one after the other: per answered report the wall seconds it took and the CPU seconds
            the server used meanwhile; and the outcomes."""
            latencies: list[float] = []
            server_cpu: list[float] = []
            outcomes: Counter[str] = Counter()
            for _ in range(count):
                rss_samples.append(server_rss_kib(deployment))
                started, server_ticks = time.monotonic(), cpu_ticks(server_pid)
                try:
                    await report(machine, idx, key, 1.0, gauge=gauge)
                    outcomes["Good"] += 1
                    latencies.append(time.monotonic() - started)
                    server_cpu.append((cpu_ticks(server_pid) - server_ticks) / ticks_per_second)
                except Exception as error:
                    outcomes[_outcome_name(error)] += 1
            return (latencies, server_cpu), outcomes

        (_, quiet_server_cpu), _ = await make_reports(REPORTS_BEFORE_AND_AFTER)
        before = server_rss_kib(deployment)

        flooder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; from tests.e2e.test_limits import run_flooder; run_flooder(sys.argv[1:])",
            str(deployment.root),
            str(deployment.opcua_port),
            str(result_path),
            cwd=REPO_ROOT,
            env=unmeasured_environment(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert flooder.stdin is not None
            assert flooder.stdout is not None
            assert await asyncio.wait_for(flooder.stdout.readline(), 60) == b"flooding\n"
            rss_samples.clear()
            latencies: list[float] = []
            server_cpu: list[float] = []
            outcomes: Counter[str] = Counter()
            # One report per step of the flood, made while the next step floods; the flooder's stdout ends when
            # it has taken its last turn.
            while await asyncio.wait_for(flooder.stdout.readline(), STEP_TIMEOUT_SECONDS) == b"step\n":
                (more_latencies, more_server_cpu), more_outcomes = await make_reports(1)
                latencies += more_latencies
                server_cpu += more_server_cpu
                outcomes += more_outcomes
                flooder.stdin.write(b"reported\n")
                await flooder.stdin.drain()
            assert await asyncio.wait_for(flooder.wait(), STEP_TIMEOUT_SECONDS) == 0
            peak = max(rss_samples)
        finally:
            if flooder.returncode is None:
                flooder.kill()
            await flooder.wait()

        # Sessions the flooder left with subscriptions live until their timeout; then everything is gone.
        await asyncio.sleep(SESSION_TIMEOUT + 3)
        (after_latencies, _), after_outcomes = await make_reports(REPORTS_BEFORE_AND_AFTER)
        after = server_rss_kib(deployment)
        async with sessions(deployment, MAX_SESSIONS - 1):
            pass  # every place the flooder held is free again

    summary = json.loads(result_path.read_text())
    flood = summary["tallies"]
    success_rate = outcomes["Good"] / sum(outcomes.values())
    p50 = statistics.median(latencies) * 1000
    p95 = statistics.quantiles(latencies, n=20)[-1] * 1000
    server_p95 = statistics.quantiles(server_cpu, n=20)[-1] * 1000
    quiet_server_p95 = statistics.quantiles(quiet_server_cpu, n=20)[-1] * 1000
    print(
        f"\nflooder: {json.dumps(flood)}, {sum(sum(t.values()) for t in flood.values())} actions "
        f"in {summary['seconds']} s"
        f"\nreporting client during the flood: {sum(outcomes.values())} calls, success {success_rate:.1%} "
        f"{dict(outcomes)}, latency p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(latencies) * 1000:.0f} ms"
        f"; server CPU while a report waited: p95 {server_p95:.0f} ms, max {max(server_cpu) * 1000:.0f} ms "
        f"(before the flood: p95 {quiet_server_p95:.0f} ms; bound {SERVER_CPU_BOUND_SECONDS * 1000:.0f} ms)"
        f"\nserver VmRSS: before {before / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, "
        f"after {after / 1024:.1f} MiB (after − before {(after - before) / 1024:+.1f} MiB)"
    )
    # The flood really went past every limit ...
    assert not summary["missing"], (
        f"the flood did not get there in {FLOOD_ACTION_BUDGET} actions ({summary['seconds']} s): "
        f"missing {summary['missing']}"
    )
    assert flood["sessions"].get("BadTooManySessions", 0) > 0
    assert flood["subscriptions"].get("BadTooManySubscriptions", 0) > 0
    assert flood["subscriptions"].get("BadTooManyMonitoredItems", 0) > 0
    assert flood["requests"].get("BadResourceUnavailable", 0) > 0
    assert flood["requests"].get("BadTooManyOperations", 0) > 0
    assert flood["chunks"].get("BadTcpMessageTooLarge", 0) > 0
    # ... while the machine kept reporting, promptly.
    assert success_rate == 1.0, outcomes
    assert sum(outcomes.values()) == MIN_REPORTS_DURING_FLOOD
    assert server_p95 < SERVER_CPU_BOUND_SECONDS * 1000, (
        f"the server spent {server_p95:.0f} ms of CPU (p95) on other work while a report waited "
        f"({quiet_server_p95:.0f} ms before the flood)"
    )
    assert after_outcomes == Counter({"Good": len(after_latencies)})
    # Memory: the limits bound what one client can make the server hold (without the chunk guard alone, three
    # connections streaming announced 200 MB chunks add about 100 MiB) ...
    assert peak - before < 32 * 1024, f"VmRSS rose by {(peak - before) / 1024:.1f} MiB during the flood"
    # ... and it is given back. Python keeps some freed memory in its allocator, so "near" means within 8 MiB:
    # over the thousands of actions the flooder takes (requests, items, subscriptions, sessions, connections), a
    # leak of about 2 KiB per action would exceed it.
    actions = sum(sum(tally.values()) for tally in flood.values())
    assert actions > MIN_FLOOD_ACTIONS, "the flood was too small for the memory check to mean something"
    assert after - before < 8 * 1024, f"VmRSS grew by {(after - before) / 1024:.1f} MiB and stayed"


# ---------------------------------------------------------------------------------------------------------------
# Failed logins (last: the penalty applies to the address every test here connects from)


@e2e
async def test_failed_logins_are_slowed_down_per_client_address(deployment: Deployment) -> None:
    assert deployment.client_certificate is not None
    certificate = deployment.client_certificate
    async with deployment.session("observer") as bystander:
        # Prepared before any failure: a session waiting to be activated.
        prepared = Client(deployment.endpoint, timeout=10)
        prepared.application_uri = certificate.uri
        await prepared.set_security(
            SecurityPolicyBasic256Sha256,
            str(certificate.cert),
            str(certificate.key),
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )
        await prepared.connect_socket()
        try:
            await prepared.send_hello()
            await prepared.open_secure_channel()
            await prepared.create_session()

            durations = []
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(UaStatusCodeError) as refused:
                    async with secure_session(deployment.endpoint, certificate, "machine1", "wrong password"):
                        pass
                durations.append(time.monotonic() - started)
                assert status_of(refused.value) == ua.StatusCodes.BadUserAccessDenied
            # The 2nd attempt waited for the 1st penalty (0.5 s), the 3rd for the 2nd (1 s).
            assert durations[1] >= PENALTY_BASE * 0.8
            assert durations[2] >= 2 * PENALTY_BASE * 0.8

            # While the address is in its penalty (now PENALTY_MAX) even the right password is refused, at once,
            # unchecked. "At once" is judged against the penalty it would otherwise wait out, not against a fixed
            # fraction of a second a busy machine may need for any round trip.
            started = time.monotonic()
            with pytest.raises(UaStatusCodeError) as refused:
                await prepared.activate_session("machine1", TEST_USERS["machine1"][1])
            assert status_of(refused.value) == ua.StatusCodes.BadUserAccessDenied
            assert time.monotonic() - started < PENALTY_MAX / 2

            # Sessions already open are not affected: they do not wait out the penalty either.
            started = time.monotonic()
            assert await bystander.get_node(STATE).read_value() == ua.ServerState.Running
            assert time.monotonic() - started < PENALTY_MAX / 2
        finally:
            with contextlib.suppress(Exception):
                await prepared.disconnect()

    # A new attempt with the right password waits out the penalty (2 s, the cap) and then gets in.
    started = time.monotonic()
    async with deployment.session("machine1") as client:
        assert await client.get_node(STATE).read_value() == ua.ServerState.Running
    assert PENALTY_MAX / 2 <= time.monotonic() - started < PENALTY_MAX + 5
