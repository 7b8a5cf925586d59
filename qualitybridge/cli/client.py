"""`qualitybridge client`: try the server from a shell — browse, read, report, subscribe — the first time.

It connects the way a machine must (Basic256Sha256, SignAndEncrypt, a trusted certificate whose ApplicationUri
it sends, a user name and password), which generic command-line tools cannot. By default it uses what
`qualitybridge demo` created in the data folder: the trusted demo client certificate and a demo user of a role
that may do what the command does. A method's arguments are given as Name=Value and converted to the types the
method declares in its InputArguments, read from the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qualitybridge.cli.common import install_stop_signals

__all__ = ["register"]

NAMESPACE_URI = "https://qualitybridge.dev/UA/"
DEMO_CLIENT_URI = "urn:qualitybridge:demo-client"
# The role whose demo user a command uses unless --user is given: the least that may do it.
_ROLE_FOR = {
    "browse": "Observer",
    "read": "Observer",
    "subscribe": "Observer",
    "report-measurement": "Machine",
    "report-confirmation": "Machine",
    "call": "Operator",
}
_METHOD_FOR = {"report-measurement": "ReportMeasurement", "report-confirmation": "ReportConfirmation"}


class ClientError(Exception):
    """Something the user can fix; printed as one line."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    client = commands.add_parser(
        "client",
        help="browse, read, report and subscribe from a shell (uses the demo's certificate and users by default)",
        description="An OPC UA client for commissioning: connects with SignAndEncrypt, a trusted certificate and a "
        "user, as a machine must. Defaults come from the demo's data folder (demo-client/, demo-users.txt).",
        epilog="examples:\n"
        "  qualitybridge client browse\n"
        "  qualitybridge client read Order/1000418.State\n"
        "  qualitybridge client report-measurement OrderNumber=1000418 OperationNumber=0010 \\\n"
        "      CharacteristicId=C-0010-01 Value=12.003 EquipmentId=GA-CAL-0101 PartSerial=SN-1\n"
        "  qualitybridge client call StartOrder OrderNumber=1000418 --user operator\n"
        "  qualitybridge client subscribe Order/1000418.State --seconds 30",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = client.add_subparsers(dest="client_command", required=True, metavar="ACTION")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--endpoint", default="opc.tcp://127.0.0.1:4840/qualitybridge", help="server endpoint URL")
        sub.add_argument("--data-dir", type=Path, default=Path("data"), help="the demo's data folder (default ./data)")
        sub.add_argument("--user", help="user name (default: a demo user of the role the action needs)")
        sub.add_argument("--password", help="password (default: the demo user's, from demo-users.txt)")
        sub.add_argument("--cert", type=Path, help="client certificate (default <data-dir>/demo-client/cert.der)")
        sub.add_argument("--key", type=Path, help="its private key (default <data-dir>/demo-client/key.pem)")
        sub.add_argument("--application-uri", default=DEMO_CLIENT_URI, help="the certificate's ApplicationUri")
        sub.add_argument("--timeout", type=float, default=10.0, help="request timeout in seconds")

    browse = actions.add_parser("browse", help="the address space below a node, as a tree")
    browse.add_argument("node", nargs="?", default="QualityBridge", help="start node (default QualityBridge)")
    browse.add_argument("--depth", type=int, default=2, help="levels to show (default 2)")
    read = actions.add_parser("read", help="read the values of nodes")
    read.add_argument("nodes", nargs="+", help="node ids: 'Order/1000418.State' (QualityBridge's) or 'ns=0;i=2256'")
    for action in ("report-measurement", "report-confirmation"):
        report = actions.add_parser(action, help=f"call {_METHOD_FOR[action]} with Name=Value arguments")
        report.add_argument("arguments", nargs="*", help="Name=Value for each input argument; run without to list")
    call = actions.add_parser("call", help="call any QualityBridge method with Name=Value arguments")
    call.add_argument("method", help="method name, e.g. StartOrder, ReportSpcAlarm")
    call.add_argument("arguments", nargs="*", help="Name=Value for each input argument; run without to list")
    subscribe = actions.add_parser("subscribe", help="print data changes of nodes until Ctrl+C")
    subscribe.add_argument("nodes", nargs="+", help="node ids, as for read")
    subscribe.add_argument("--seconds", type=float, default=0.0, help="stop after this long (default: Ctrl+C)")
    for sub in (browse, read, subscribe, call, *[actions.choices[a] for a in _METHOD_FOR]):
        common(sub)
    client.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(arguments))
    except ClientError as exc:
        print(f"qualitybridge client: {exc}", file=sys.stderr)  # noqa: T201
        return 2


@dataclass(frozen=True)
class Login:
    user: str
    password: str
    cert: Path
    key: Path


def _demo_users(data_dir: Path) -> list[tuple[str, str, str]]:
    path = data_dir / "demo-users.txt"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            rows.append((parts[0], parts[1], parts[2]))
    return rows


def login_for(arguments: argparse.Namespace, action: str) -> Login:
    data_dir: Path = arguments.data_dir
    cert = arguments.cert or data_dir / "demo-client" / "cert.der"
    key = arguments.key or data_dir / "demo-client" / "key.pem"
    for path, option in ((cert, "--cert"), (key, "--key")):
        if not path.is_file():
            raise ClientError(f"{path} not found: give {option}, or --data-dir of a `qualitybridge demo`")
    users = _demo_users(data_dir)
    user, password = arguments.user, arguments.password
    if user is None:
        role = _ROLE_FOR[action]
        user = next((name for name, user_role, _pw in users if user_role == role), None)
        if user is None:
            raise ClientError(f"no demo user with role {role} in {data_dir / 'demo-users.txt'}: give --user")
    if password is None:
        password = next((pw for name, _role, pw in users if name == user), None)
        if password is None:
            raise ClientError(f"no password for {user!r} in {data_dir / 'demo-users.txt'}: give --password")
    return Login(user, password, cert, key)


@contextlib.asynccontextmanager
async def connected(arguments: argparse.Namespace, action: str) -> AsyncIterator[Any]:
    from asyncua import Client, ua
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    login = login_for(arguments, action)
    client = Client(arguments.endpoint, timeout=arguments.timeout)
    client.application_uri = arguments.application_uri
    client.set_user(login.user)
    client.set_password(login.password)
    await client.set_security(
        SecurityPolicyBasic256Sha256, str(login.cert), str(login.key), mode=ua.MessageSecurityMode.SignAndEncrypt
    )
    try:
        await client.connect()
    except (OSError, TimeoutError) as exc:
        raise ClientError(f"cannot reach {arguments.endpoint}: {exc or type(exc).__name__}") from None
    except ua.UaStatusCodeError as exc:
        raise ClientError(
            f"{arguments.endpoint} refused {login.user!r}: {ua.StatusCode(exc.code).name} — "
            "is the certificate trusted (qualitybridge pki list) and the password right?"
        ) from None
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


async def _run(arguments: argparse.Namespace) -> int:
    action = arguments.client_command
    async with connected(arguments, action) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        if action == "browse":
            await _browse(client, _node_id(arguments.node, ns), arguments.depth)
            return 0
        if action == "read":
            for text in arguments.nodes:
                value = await client.get_node(_node_id(text, ns)).read_value()
                print(f"{text} = {_show(value)}")  # noqa: T201
            return 0
        if action == "subscribe":
            return await _subscribe(client, [(text, _node_id(text, ns)) for text in arguments.nodes], arguments.seconds)
        method = _METHOD_FOR.get(action) or arguments.method
        return await _call(client, ns, method, arguments.arguments)


def _node_id(text: str, ns: int) -> Any:
    from asyncua import ua

    if text.startswith(("ns=", "i=", "s=", "g=", "b=")):
        return ua.NodeId.from_string(text)
    return ua.NodeId(ua.String(text), ua.Int16(ns))


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


async def _browse(client: Any, node_id: Any, depth: int) -> None:
    from asyncua import ua

    async def walk(node: Any, level: int) -> None:
        name = (await node.read_browse_name()).Name
        node_class = await node.read_node_class()
        line = f"{'  ' * level}{name}  ({node.nodeid.to_string()})"
        if node_class == ua.NodeClass.Variable:
            with contextlib.suppress(Exception):
                line += f" = {_show(await node.read_value())}"
        elif node_class == ua.NodeClass.Method:
            line += " [method]"
        print(line)  # noqa: T201
        if level < depth:
            for child in await node.get_children():
                await walk(child, level + 1)

    await walk(client.get_node(node_id), 0)


@dataclass(frozen=True)
class Declared:
    name: str
    data_type: int  # the built-in type's id in namespace 0; 0 for types of other namespaces (enumerations)
    array: bool


# DataType NodeIds of namespace 0 -> the VariantType a value of the argument is sent as.
def _variant_type(data_type: int) -> Any:
    from asyncua import ua

    builtin = {
        1: ua.VariantType.Boolean,
        2: ua.VariantType.SByte,
        3: ua.VariantType.Byte,
        4: ua.VariantType.Int16,
        5: ua.VariantType.UInt16,
        6: ua.VariantType.Int32,
        7: ua.VariantType.UInt32,
        8: ua.VariantType.Int64,
        9: ua.VariantType.UInt64,
        10: ua.VariantType.Float,
        11: ua.VariantType.Double,
        12: ua.VariantType.String,
        13: ua.VariantType.DateTime,
        29: ua.VariantType.Int32,  # Enumeration
    }
    return builtin.get(data_type, ua.VariantType.Int32)  # a namespace's own enumeration travels as Int32


async def declared_arguments(client: Any, method_node: Any, property_name: str) -> list[Declared]:
    from asyncua import ua

    try:
        prop = await method_node.get_child(f"0:{property_name}")
    except ua.UaStatusCodeError:
        return []
    declared = []
    for argument in await prop.read_value() or []:
        data_type = argument.DataType
        type_id = data_type.Identifier if data_type.NamespaceIndex == 0 and isinstance(data_type.Identifier, int) else 0
        declared.append(Declared(argument.Name, type_id, argument.ValueRank >= 1))
    return declared


def _convert(declared: Declared, text: str) -> Any:
    from asyncua import ua

    variant_type = _variant_type(declared.data_type)

    def one(item: str) -> Any:
        if variant_type == ua.VariantType.String:
            return item
        if variant_type == ua.VariantType.DateTime:
            if item.lower() == "now":
                return datetime.now(UTC)
            moment = datetime.fromisoformat(item)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if variant_type == ua.VariantType.Boolean:
            if item.lower() not in ("true", "false", "1", "0"):
                raise ValueError("true or false")
            return item.lower() in ("true", "1")
        if variant_type in (ua.VariantType.Float, ua.VariantType.Double):
            return float(item)
        return int(item)

    try:
        value = [one(item) for item in text.split(",")] if declared.array else one(text)
    except ValueError as exc:
        raise ClientError(f"{declared.name}={text!r} is not a {variant_type.name}: {exc}") from None
    return ua.Variant(value, variant_type)


def _default(declared: Declared) -> Any:
    """Values a commissioning engineer need not type: the time of measuring (now) and optional ids (empty)."""
    from asyncua import ua

    variant_type = _variant_type(declared.data_type)
    if declared.array:
        return None
    if variant_type == ua.VariantType.DateTime:
        return ua.Variant(datetime.now(UTC), variant_type)
    if variant_type == ua.VariantType.String and declared.name.startswith("Client"):
        return ua.Variant("", variant_type)
    return None


def _signature(method: str, declared: Sequence[Declared]) -> str:
    def one(item: Declared) -> str:
        kind = _variant_type(item.data_type).name + ("[] (comma-separated)" if item.array else "")
        default = _default(item)
        suffix = "" if default is None else (" = now" if kind == "DateTime" else " = ''")
        return f"{item.name}: {kind}{suffix}"

    return f"{method}(" + ", ".join(one(item) for item in declared) + ")"


async def _call(client: Any, ns: int, method: str, pairs: Sequence[str]) -> int:
    from asyncua import ua

    parent = client.get_node(_node_id("QualityBridge", ns))
    method_node = client.get_node(_node_id(f"QualityBridge.{method}", ns))
    try:
        await method_node.read_browse_name()
    except ua.UaStatusCodeError:
        raise ClientError(f"the server has no method QualityBridge.{method}") from None
    declared = await declared_arguments(client, method_node, "InputArguments")
    given: dict[str, str] = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator:
            raise ClientError(f"{pair!r}: give arguments as Name=Value; {_signature(method, declared)}")
        given[name.strip()] = value
    unknown = sorted(set(given) - {item.name for item in declared})
    if unknown:
        raise ClientError(f"{method} has no argument {', '.join(unknown)}; {_signature(method, declared)}")
    values = []
    missing = []
    for item in declared:
        if item.name in given:
            values.append(_convert(item, given[item.name]))
        elif (default := _default(item)) is not None:
            values.append(default)
        else:
            missing.append(item.name)
    if missing:
        raise ClientError(f"missing {', '.join(missing)}; {_signature(method, declared)}")
    request = ua.CallMethodRequest()
    request.ObjectId = parent.nodeid
    request.MethodId = method_node.nodeid
    request.InputArguments = values
    (result,) = await client.uaclient.call([request])  # asyncua's call_method raises before the reasons are read
    if not result.StatusCode.is_good():
        reasons = [
            f"{item.name}: {info.AdditionalInfo}"
            for item, info in zip(declared, result.InputArgumentDiagnosticInfos or [], strict=False)
            if info is not None and info.AdditionalInfo
        ]
        print(f"{method} refused: {result.StatusCode.name}" + (f" ({'; '.join(reasons)})" if reasons else ""))  # noqa: T201
        return 1
    outputs = await declared_arguments(client, method_node, "OutputArguments")
    names = [item.name for item in outputs] or [f"Output{i}" for i in range(len(result.OutputArguments))]
    print(f"{method}: Good")  # noqa: T201
    for name, variant in zip(names, result.OutputArguments or [], strict=False):
        print(f"  {name} = {_show(variant.Value)}")  # noqa: T201
    return 0


async def _subscribe(client: Any, nodes: list[tuple[str, Any]], seconds: float) -> int:
    names: dict[Any, str] = {}

    class Printer:
        def datachange_notification(self, node: Any, value: Any, _data: Any) -> None:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            print(f"{stamp} {names.get(node.nodeid, node.nodeid.to_string())} = {_show(value)}", flush=True)  # noqa: T201

    subscription = await client.create_subscription(250, Printer())
    handles = []
    for text, node_id in nodes:
        names[node_id] = text
        handles.append(await subscription.subscribe_data_change(client.get_node(node_id)))
    stop = asyncio.Event()
    install_stop_signals(stop)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds or None)
    with contextlib.suppress(Exception):
        await subscription.delete()
    return 0
