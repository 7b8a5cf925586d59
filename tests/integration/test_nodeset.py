"""The QualityBridge NodeSet: schema-valid, importable into asyncua, and instantiable the way the server needs.

The server links to the entry point's string NodeIds and creates orders, operations, characteristics and gauges with
`add_object(ua.NodeId("<key>", idx), ..., objecttype=<type>)`; asyncua names every instantiated child
`<parent id>.<BrowseName>`. These tests pin both contracts, so a change to the XML that breaks the server fails here.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from importlib.resources import as_file, files
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import Node, Server, ua
from asyncua.common.ua_utils import get_node_supertype
from lxml import etree

from qualitybridge.domain.model import CalibrationStatus, OrderState, ResultEvaluation
from tests.harness import standard_server

NAMESPACE_URI = "https://qualitybridge.dev/UA/"
UA_NS = "http://opcfoundation.org/UA/2011/03/UANodeSet.xsd"
XSD_PATH = Path(__file__).resolve().parents[3] / "shared" / "opcua-nodesets" / "UANodeSet.xsd"

PRODUCTION_ORDER_TYPE = 1001
OPERATION_TYPE = 1002
INSPECTION_CHARACTERISTIC_TYPE = 1003
TEST_EQUIPMENT_TYPE = 1004
DIAGNOSTICS_TYPE = 1005
QUALITY_BRIDGE_TYPE = 1006
MEASUREMENT_REPORTED_EVENT_TYPE = 1010
SPC_ALARM_EVENT_TYPE = 1011
SPC_STATUS_TYPE = 1012
SPC_ALARM_TYPE = 1013
QUALITY_EVENT_TYPE = 1014
MEASUREMENT_OUT_OF_TOLERANCE_EVENT_TYPE = 1015
GAUGE_CALIBRATION_EVENT_TYPE = 1016
ORDER_STATE_CHANGED_EVENT_TYPE = 1017
POSTING_DEAD_LETTERED_EVENT_TYPE = 1018
PLAN_VERSION_CHANGED_EVENT_TYPE = 1020
QUALITY_EVENTS = (
    MEASUREMENT_OUT_OF_TOLERANCE_EVENT_TYPE,
    GAUGE_CALIBRATION_EVENT_TYPE,
    ORDER_STATE_CHANGED_EVENT_TYPE,
    POSTING_DEAD_LETTERED_EVENT_TYPE,
    PLAN_VERSION_CHANGED_EVENT_TYPE,
)
SPC_MEMBERS = {"CenterLine", "UCL", "LCL", "Cp", "Cpk", "SampleCount", "LastViolatedRule"}
ORDER_STATE_ENUM = 3001
CALIBRATION_STATUS_ENUM = 3002
RESULT_EVALUATION_ENUM = 3003

# BrowseNames (namespace QualityBridge) of the Mandatory instance declarations of each type.
MANDATORY_CHILDREN: dict[int, set[str]] = {
    PRODUCTION_ORDER_TYPE: {
        "OrderNumber",
        "MaterialNumber",
        "PartNumber",
        "Plant",
        "WorkCentre",
        "PlannedQuantity",
        "QuantityUnit",
        "RoutingVersion",
        "PlanVersion",
        "PlannedStart",
        "PlannedEnd",
        "State",
        "Operations",
    },
    OPERATION_TYPE: {"OperationNumber", "Description", "WorkCentre", "Characteristics"},
    INSPECTION_CHARACTERISTIC_TYPE: {
        "CharacteristicId",
        "Description",
        "Unit",
        "Classification",
        "GaugeType",
        "PlanVersion",
        "DecimalPlaces",
        "SampleSize",
        "Nominal",
        "LowerLimit",
        "UpperLimit",
        "LastValue",
        "LastEvaluation",
        "LastMeasuredAt",
        "LastResultId",
        "Spc",
    },
    SPC_STATUS_TYPE: SPC_MEMBERS,
    SPC_ALARM_TYPE: {
        "OrderNumber",
        "OperationNumber",
        "CharacteristicId",
        "Rule",
        "RuleNumber",
        "ResultId",
        "Value",
        "CenterLine",
        "UCL",
        "LCL",
    },
    TEST_EQUIPMENT_TYPE: {
        "EquipmentId",
        "Description",
        "EquipmentType",
        "CertificateNumber",
        "LastCalibration",
        "NextCalibrationDue",
        "CalibrationStatus",
    },
    DIAGNOSTICS_TYPE: {
        "LastSyncTime",
        "LastSyncSucceeded",
        "SyncErrorCount",
        "LastSyncError",
        "OutboxDepth",
        "OutboxDeadLetters",
        "SyncFindings",
        "MasterDataGaps",
        "HeldBackOrders",
    },
    QUALITY_BRIDGE_TYPE: {
        "Orders",
        "TestEquipment",
        "Diagnostics",
        "ReportMeasurement",
        "ReleasedOrders",
        "ReportMeasurements",
        "ReportConfirmation",
        "ReportSpcAlarm",
        "StartOrder",
        "InterruptOrder",
        "ResumeOrder",
        "EndOrder",
        "AbortOrder",
    },
    MEASUREMENT_REPORTED_EVENT_TYPE: {
        "OrderNumber",
        "OperationNumber",
        "CharacteristicId",
        "ResultId",
        "Value",
        "Evaluation",
    },
    SPC_ALARM_EVENT_TYPE: {
        "OrderNumber",
        "OperationNumber",
        "CharacteristicId",
        "AlarmId",
        "Rule",
        "RuleNumber",
        "ResultId",
        "Value",
        "CenterLine",
        "UCL",
        "LCL",
    },
    MEASUREMENT_OUT_OF_TOLERANCE_EVENT_TYPE: {
        "OrderNumber",
        "OperationNumber",
        "CharacteristicId",
        "ResultId",
        "Value",
        "LowerLimit",
        "UpperLimit",
        "Evaluation",
        "EquipmentId",
        "PartSerial",
    },
    GAUGE_CALIBRATION_EVENT_TYPE: {"EquipmentId", "CalibrationStatus", "PreviousCalibrationStatus", "NextDue"},
    ORDER_STATE_CHANGED_EVENT_TYPE: {"OrderNumber", "State", "MaterialNumber"},
    POSTING_DEAD_LETTERED_EVENT_TYPE: {"IdempotencyKey", "PostingKind", "OrderNumber", "Attempts", "LastError"},
    PLAN_VERSION_CHANGED_EVENT_TYPE: {
        "OrderNumber",
        "OperationNumber",
        "CharacteristicId",
        "PreviousPlanVersion",
        "PlanVersion",
        "PreviousNominal",
        "Nominal",
        "PreviousLowerLimit",
        "LowerLimit",
        "PreviousUpperLimit",
        "UpperLimit",
    },
}

SUPERTYPES = {
    PRODUCTION_ORDER_TYPE: ua.ObjectIds.BaseObjectType,
    OPERATION_TYPE: ua.ObjectIds.BaseObjectType,
    INSPECTION_CHARACTERISTIC_TYPE: ua.ObjectIds.BaseObjectType,
    TEST_EQUIPMENT_TYPE: ua.ObjectIds.BaseObjectType,
    DIAGNOSTICS_TYPE: ua.ObjectIds.BaseObjectType,
    QUALITY_BRIDGE_TYPE: ua.ObjectIds.BaseObjectType,
    MEASUREMENT_REPORTED_EVENT_TYPE: ua.ObjectIds.BaseEventType,
    SPC_ALARM_EVENT_TYPE: ua.ObjectIds.BaseEventType,
    SPC_STATUS_TYPE: ua.ObjectIds.BaseObjectType,
    SPC_ALARM_TYPE: ua.ObjectIds.AlarmConditionType,
}

INPUT_ARGUMENTS = [
    ("OrderNumber", ua.ObjectIds.String),
    ("OperationNumber", ua.ObjectIds.String),
    ("CharacteristicId", ua.ObjectIds.String),
    ("Value", ua.ObjectIds.Double),
    ("EquipmentId", ua.ObjectIds.String),
    ("PartSerial", ua.ObjectIds.String),
    ("MeasuredAt", ua.ObjectIds.DateTime),
    ("ClientResultId", ua.ObjectIds.String),
]

_STRING, _DOUBLE, _BOOLEAN = ua.ObjectIds.String, ua.ObjectIds.Double, ua.ObjectIds.Boolean
# Method -> (inputs, outputs) as (name, data type, value rank); an int data type is in the QualityBridge namespace's
# numbering only when marked below (the enumerations), otherwise it is a standard type.
SHOP_FLOOR_METHODS: dict[str, tuple[list[tuple[str, int | str, int]], list[tuple[str, int | str, int]]]] = {
    "ReportMeasurements": (
        [
            ("OrderNumbers", _STRING, 1),
            ("OperationNumbers", _STRING, 1),
            ("CharacteristicIds", _STRING, 1),
            ("Values", _DOUBLE, 1),
            ("EquipmentIds", _STRING, 1),
            ("PartSerials", _STRING, 1),
            ("MeasuredAt", ua.ObjectIds.DateTime, 1),
            ("ClientResultIds", _STRING, 1),
        ],
        [
            ("ResultIds", _STRING, 1),
            ("Evaluations", "ResultEvaluationEnum", 1),
            ("StatusCodes", ua.ObjectIds.StatusCode, 1),
            ("Messages", _STRING, 1),
            ("GaugeDueSoon", _BOOLEAN, 1),
        ],
    ),
    "ReportConfirmation": (
        [
            ("OrderNumber", _STRING, -1),
            ("OperationNumber", _STRING, -1),
            ("YieldQuantity", _DOUBLE, -1),
            ("ScrapQuantity", _DOUBLE, -1),
            ("ReworkQuantity", _DOUBLE, -1),
            ("Unit", _STRING, -1),
            ("ReasonCode", _STRING, -1),
            ("Final", _BOOLEAN, -1),
            ("ClientConfirmationId", _STRING, -1),
        ],
        [("ConfirmationId", _STRING, -1)],
    ),
    "ReportSpcAlarm": (
        [
            ("OrderNumber", _STRING, -1),
            ("OperationNumber", _STRING, -1),
            ("CharacteristicId", _STRING, -1),
            ("Rule", _STRING, -1),
            ("Severity", ua.ObjectIds.UInt16, -1),
            ("Message", _STRING, -1),
            ("ClientAlarmId", _STRING, -1),
        ],
        [("AlarmId", _STRING, -1)],
    ),
    **{
        name: ([("OrderNumber", _STRING, -1)], [("State", "OrderStateEnum", -1)])
        for name in ("StartOrder", "InterruptOrder", "ResumeOrder", "EndOrder", "AbortOrder")
    },
}

module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def nodeset_path() -> Iterator[Path]:
    with as_file(files("qualitybridge.nodesets") / "QualityBridge.NodeSet2.xml") as path:
        yield path


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    if not XSD_PATH.is_file():
        pytest.skip(f"UANodeSet.xsd not found at {XSD_PATH} (expected next to the repository in shared/opcua-nodesets)")
    return etree.XMLSchema(etree.parse(str(XSD_PATH)))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Imported:
    server: Server
    idx: int
    import_warnings: list[str] = field(default_factory=list)

    def node(self, identifier: int | str) -> Node:
        return self.server.get_node(ua.NodeId(identifier, self.idx))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def imported(nodeset_path: Path) -> AsyncIterator[Imported]:
    """A bare asyncua server (init only, never started) with the NodeSet imported; asyncua warnings are recorded."""
    server = await standard_server()
    collector = _Collect()
    asyncua_logger = logging.getLogger("asyncua")
    asyncua_logger.addHandler(collector)
    try:
        await server.import_xml(nodeset_path)
    finally:
        asyncua_logger.removeHandler(collector)
    idx = await server.get_namespace_index(NAMESPACE_URI)
    yield Imported(server, idx, [record.getMessage() for record in collector.records])


def test_nodeset_is_valid_against_the_ua_schema(schema: etree.XMLSchema, nodeset_path: Path) -> None:
    document = etree.parse(str(nodeset_path))
    assert schema.validate(document), str(schema.error_log)


def _break_by_dropping_browse_name(root: etree._Element) -> None:
    variable = root.find(f"{{{UA_NS}}}UAVariable")
    assert variable is not None
    del variable.attrib["BrowseName"]


def _break_by_design_tool_only(root: etree._Element) -> None:
    # DesignToolOnly is what makes asyncua and strict stacks reject some official NodeSets; ours must never carry it.
    object_type = root.find(f"{{{UA_NS}}}UAObjectType")
    assert object_type is not None
    object_type.set("DesignToolOnly", "true")


def _break_by_misplacing_references(root: etree._Element) -> None:
    object_type = root.find(f"{{{UA_NS}}}UAObjectType")
    assert object_type is not None
    references = object_type.find(f"{{{UA_NS}}}References")
    assert references is not None
    object_type.remove(references)
    object_type.insert(0, references)  # References must follow DisplayName/Description


@pytest.mark.parametrize(
    "break_copy", [_break_by_dropping_browse_name, _break_by_design_tool_only, _break_by_misplacing_references]
)
def test_schema_rejects_a_broken_copy(schema: etree.XMLSchema, nodeset_path: Path, break_copy: object) -> None:
    broken = copy.deepcopy(etree.parse(str(nodeset_path)))
    assert callable(break_copy)
    break_copy(broken.getroot())
    assert not schema.validate(broken)


@module_loop
async def test_import_is_clean_and_registers_the_model(imported: Imported) -> None:
    assert imported.import_warnings == []
    namespace_objects = {
        (await node.read_browse_name()).Name: node for node in await imported.server.nodes.namespaces.get_children()
    }
    metadata = namespace_objects[NAMESPACE_URI]
    assert await (await metadata.get_child("0:NamespaceVersion")).read_value() == "0.1.0"
    published = await (await metadata.get_child("0:NamespacePublicationDate")).read_value()
    assert published.date().isoformat() == "2026-11-25"


async def _supertype(node: Node) -> ua.NodeId | None:
    supertype = await get_node_supertype(node)
    return supertype.nodeid if supertype is not None else None


async def _modelling_rule(node: Node) -> int | None:
    rules = await node.get_referenced_nodes(refs=ua.ObjectIds.HasModellingRule)
    return rules[0].nodeid.Identifier if rules else None


@module_loop
@pytest.mark.parametrize("type_id", sorted(MANDATORY_CHILDREN))
async def test_object_types_declare_their_members_as_mandatory(imported: Imported, type_id: int) -> None:
    type_node = imported.node(type_id)
    assert await type_node.read_node_class() == ua.NodeClass.ObjectType
    if type_id in QUALITY_EVENTS:
        assert await _supertype(type_node) == ua.NodeId(QUALITY_EVENT_TYPE, imported.idx)
        assert await _supertype(imported.node(QUALITY_EVENT_TYPE)) == ua.NodeId(ua.ObjectIds.BaseEventType)
        assert (await imported.node(QUALITY_EVENT_TYPE).read_attribute(ua.AttributeIds.IsAbstract)).Value.Value is True
    else:
        assert await _supertype(type_node) == ua.NodeId(SUPERTYPES[type_id])
    children = {(await child.read_browse_name()).to_string(): child for child in await type_node.get_children()}
    assert set(children) == {f"{imported.idx}:{name}" for name in MANDATORY_CHILDREN[type_id]}
    for browse_name, child in children.items():
        assert await _modelling_rule(child) == ua.ObjectIds.ModellingRule_Mandatory, browse_name


@module_loop
async def test_members_have_the_specified_data_and_type_definitions(imported: Imported) -> None:
    char_type = imported.node(INSPECTION_CHARACTERISTIC_TYPE)
    expected_data_types = {
        "DecimalPlaces": ua.NodeId(ua.ObjectIds.Byte),
        "SampleSize": ua.NodeId(ua.ObjectIds.UInt32),
        "LowerLimit": ua.NodeId(ua.ObjectIds.Double),
        "Unit": ua.NodeId(ua.ObjectIds.String),
        "LastValue": ua.NodeId(ua.ObjectIds.Double),
        "LastMeasuredAt": ua.NodeId(ua.ObjectIds.DateTime),
        "LastEvaluation": ua.NodeId(RESULT_EVALUATION_ENUM, imported.idx),
    }
    for name, data_type in expected_data_types.items():
        member = await char_type.get_child(f"{imported.idx}:{name}")
        assert await member.read_data_type() == data_type, name
    last_value = await char_type.get_child(f"{imported.idx}:LastValue")
    assert await last_value.read_type_definition() == ua.NodeId(ua.ObjectIds.AnalogUnitRangeType)
    for unit_member in ("0:EURange", "0:EngineeringUnits"):
        declaration = await last_value.get_child(unit_member)
        assert await _modelling_rule(declaration) == ua.ObjectIds.ModellingRule_Mandatory

    state = await imported.node(PRODUCTION_ORDER_TYPE).get_child(f"{imported.idx}:State")
    assert await state.read_data_type() == ua.NodeId(ORDER_STATE_ENUM, imported.idx)
    operations = await imported.node(PRODUCTION_ORDER_TYPE).get_child(f"{imported.idx}:Operations")
    assert await operations.read_type_definition() == ua.NodeId(ua.ObjectIds.FolderType)
    calibration = await imported.node(TEST_EQUIPMENT_TYPE).get_child(f"{imported.idx}:CalibrationStatus")
    assert await calibration.read_data_type() == ua.NodeId(CALIBRATION_STATUS_ENUM, imported.idx)
    diagnostics = await imported.node(QUALITY_BRIDGE_TYPE).get_child(f"{imported.idx}:Diagnostics")
    assert await diagnostics.read_type_definition() == ua.NodeId(DIAGNOSTICS_TYPE, imported.idx)


@module_loop
@pytest.mark.parametrize(
    ("enum_id", "domain_enum", "value_property"),
    [
        (ORDER_STATE_ENUM, OrderState, "EnumValues"),
        (CALIBRATION_STATUS_ENUM, CalibrationStatus, "EnumStrings"),
        (RESULT_EVALUATION_ENUM, ResultEvaluation, "EnumStrings"),
    ],
)
async def test_enumerations_match_the_domain_model(
    imported: Imported, enum_id: int, domain_enum: type[IntEnum], value_property: str
) -> None:
    data_type = imported.node(enum_id)
    assert await _supertype(data_type) == ua.NodeId(ua.ObjectIds.Enumeration)
    definition = await data_type.read_data_type_definition()
    assert isinstance(definition, ua.EnumDefinition)
    defined = {enum_field.Value: enum_field.Name for enum_field in definition.Fields}
    # Domain names are UPPER_SNAKE, UA names PascalCase; compare them letter for letter.
    assert {value: name.upper() for value, name in defined.items()} == {
        member.value: member.name.replace("_", "") for member in domain_enum
    }
    assert all(enum_field.Description.Text for enum_field in definition.Fields)

    listed = await (await data_type.get_child(f"0:{value_property}")).read_value()
    if value_property == "EnumValues":
        assert {entry.Value: entry.DisplayName.Text for entry in listed} == defined
        assert all(entry.Description.Text for entry in listed)
    else:
        assert [text.Text for text in listed] == [defined[value] for value in range(len(defined))]


@module_loop
async def test_entry_point_object_has_the_node_ids_the_server_links_to(imported: Imported) -> None:
    entry = imported.node("QualityBridge")
    assert await entry.read_type_definition() == ua.NodeId(QUALITY_BRIDGE_TYPE, imported.idx)
    organizers = await entry.get_referenced_nodes(refs=ua.ObjectIds.Organizes, direction=ua.BrowseDirection.Inverse)
    assert [node.nodeid for node in organizers] == [ua.NodeId(ua.ObjectIds.ObjectsFolder)]

    children = {node.nodeid.Identifier for node in await entry.get_children()}
    assert children == {f"QualityBridge.{name}" for name in MANDATORY_CHILDREN[QUALITY_BRIDGE_TYPE]}
    assert await imported.node("QualityBridge.Orders").read_type_definition() == ua.NodeId(ua.ObjectIds.FolderType)
    diagnostics = {node.nodeid.Identifier for node in await imported.node("QualityBridge.Diagnostics").get_children()}
    assert diagnostics == {f"QualityBridge.Diagnostics.{name}" for name in MANDATORY_CHILDREN[DIAGNOSTICS_TYPE]}
    outbox_depth = await imported.node("QualityBridge.Diagnostics.OutboxDepth").read_data_value()
    assert outbox_depth.Value is not None
    assert outbox_depth.Value.VariantType == ua.VariantType.UInt32


@module_loop
async def test_report_measurement_declares_described_arguments(imported: Imported) -> None:
    method = imported.node("QualityBridge.ReportMeasurement")
    assert await method.read_node_class() == ua.NodeClass.Method
    inputs = await imported.node("QualityBridge.ReportMeasurement.InputArguments").read_value()
    outputs = await imported.node("QualityBridge.ReportMeasurement.OutputArguments").read_value()
    assert [(arg.Name, arg.DataType) for arg in inputs] == [(name, ua.NodeId(dt)) for name, dt in INPUT_ARGUMENTS]
    assert [(arg.Name, arg.DataType) for arg in outputs] == [
        ("ResultId", ua.NodeId(ua.ObjectIds.String)),
        ("Evaluation", ua.NodeId(RESULT_EVALUATION_ENUM, imported.idx)),
    ]
    assert all(arg.Description.Text and arg.ValueRank == -1 for arg in [*inputs, *outputs])
    client_result_id = next(arg for arg in inputs if arg.Name == "ClientResultId")
    assert "idempotency" in client_result_id.Description.Text


async def _child_ids(node: Node) -> set[str]:
    return {child.nodeid.Identifier for child in await node.get_children()}


@module_loop
async def test_instantiation_gives_children_string_ids_from_the_parent(imported: Imported) -> None:
    idx = imported.idx
    orders = imported.node("QualityBridge.Orders")
    order = await orders.add_object(
        ua.NodeId("Order/4711", idx), "4711", objecttype=ua.NodeId(PRODUCTION_ORDER_TYPE, idx)
    )
    assert await _child_ids(order) == {f"Order/4711.{name}" for name in MANDATORY_CHILDREN[PRODUCTION_ORDER_TYPE]}

    operation = await imported.node("Order/4711.Operations").add_object(
        ua.NodeId("Order/4711/Op/0010", idx), "0010", objecttype=ua.NodeId(OPERATION_TYPE, idx)
    )
    assert await _child_ids(operation) == {f"Order/4711/Op/0010.{name}" for name in MANDATORY_CHILDREN[OPERATION_TYPE]}

    char_id = "Order/4711/Op/0010/Char/BORE-1"
    characteristic = await imported.node("Order/4711/Op/0010.Characteristics").add_object(
        ua.NodeId(char_id, idx), "BORE-1", objecttype=ua.NodeId(INSPECTION_CHARACTERISTIC_TYPE, idx)
    )
    assert await _child_ids(characteristic) == {
        f"{char_id}.{name}" for name in MANDATORY_CHILDREN[INSPECTION_CHARACTERISTIC_TYPE]
    }
    spc = imported.node(f"{char_id}.Spc")
    assert await spc.read_type_definition() == ua.NodeId(SPC_STATUS_TYPE, idx)
    assert await _child_ids(spc) == {f"{char_id}.Spc.{name}" for name in SPC_MEMBERS}
    assert await imported.node(f"{char_id}.Spc.SampleCount").read_data_type() == ua.NodeId(ua.ObjectIds.UInt32)
    assert await imported.node(f"{char_id}.Spc.Cpk").read_data_type() == ua.NodeId(ua.ObjectIds.Double)
    last_value = imported.node(f"{char_id}.LastValue")
    assert await last_value.read_type_definition() == ua.NodeId(ua.ObjectIds.AnalogUnitRangeType)
    assert await _child_ids(last_value) == {f"{char_id}.LastValue.EURange", f"{char_id}.LastValue.EngineeringUnits"}
    # The server fills the limits and the UNECE unit into exactly these nodes.
    await imported.node(f"{char_id}.LastValue.EURange").write_value(ua.Range(Low=9.98, High=10.02))
    millimetre = ua.EUInformation(
        NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
        UnitId=int.from_bytes(b"MMT", "big"),
        DisplayName=ua.LocalizedText("mm"),
        Description=ua.LocalizedText("millimetre"),
    )
    await imported.node(f"{char_id}.LastValue.EngineeringUnits").write_value(millimetre)
    assert (await imported.node(f"{char_id}.LastValue.EURange").read_value()).High == 10.02
    assert (await imported.node(f"{char_id}.LastValue.EngineeringUnits").read_value()).UnitId == 5066068

    equipment = await imported.node("QualityBridge.TestEquipment").add_object(
        ua.NodeId("TestEquipment/CAL-042", idx), "CAL-042", objecttype=ua.NodeId(TEST_EQUIPMENT_TYPE, idx)
    )
    assert await _child_ids(equipment) == {
        f"TestEquipment/CAL-042.{name}" for name in MANDATORY_CHILDREN[TEST_EQUIPMENT_TYPE]
    }


@module_loop
@pytest.mark.parametrize(
    "event_type", [MEASUREMENT_REPORTED_EVENT_TYPE, SPC_ALARM_EVENT_TYPE, SPC_ALARM_TYPE, *QUALITY_EVENTS]
)
async def test_events_carry_their_fields(imported: Imported, event_type: int) -> None:
    generator = await imported.server.get_event_generator(
        ua.NodeId(event_type, imported.idx), ua.NodeId("QualityBridge", imported.idx)
    )
    for name in MANDATORY_CHILDREN[event_type]:
        assert hasattr(generator.event, name), name


@module_loop
@pytest.mark.parametrize("method_name", sorted(SHOP_FLOOR_METHODS))
async def test_shop_floor_methods_declare_described_arguments(imported: Imported, method_name: str) -> None:
    enumerations = {"ResultEvaluationEnum": RESULT_EVALUATION_ENUM, "OrderStateEnum": ORDER_STATE_ENUM}

    def data_type(declared: int | str) -> ua.NodeId:
        if isinstance(declared, str):
            return ua.NodeId(enumerations[declared], imported.idx)
        return ua.NodeId(declared)

    expected_inputs, expected_outputs = SHOP_FLOOR_METHODS[method_name]
    for owner in (f"QualityBridge.{method_name}", None):
        if owner is None:  # the declaration on QualityBridgeType carries the same arguments as the instance
            declaration = await imported.node(QUALITY_BRIDGE_TYPE).get_child(f"{imported.idx}:{method_name}")
            assert await _modelling_rule(declaration) == ua.ObjectIds.ModellingRule_Mandatory
            inputs = await (await declaration.get_child("0:InputArguments")).read_value()
            outputs = await (await declaration.get_child("0:OutputArguments")).read_value()
        else:
            assert await imported.node(owner).read_node_class() == ua.NodeClass.Method
            inputs = await imported.node(f"{owner}.InputArguments").read_value()
            outputs = await imported.node(f"{owner}.OutputArguments").read_value()
        assert [(a.Name, a.DataType, a.ValueRank) for a in inputs] == [
            (name, data_type(declared), rank) for name, declared, rank in expected_inputs
        ]
        assert [(a.Name, a.DataType, a.ValueRank) for a in outputs] == [
            (name, data_type(declared), rank) for name, declared, rank in expected_outputs
        ]
        assert all(argument.Description.Text for argument in [*inputs, *outputs])


@module_loop
async def test_report_spc_alarm_generates_its_event_type(imported: Imported) -> None:
    declaration = await imported.node(QUALITY_BRIDGE_TYPE).get_child(f"{imported.idx}:ReportSpcAlarm")
    generated = await declaration.get_referenced_nodes(refs=ua.ObjectIds.GeneratesEvent)
    assert [node.nodeid for node in generated] == [ua.NodeId(SPC_ALARM_EVENT_TYPE, imported.idx)]
