"""Who may call ConditionRefresh: whoever may subscribe (OPC UA Part 9), Observers included, and in a Call of
nothing else. Judged by the service ruleset on the request body as it arrives, before asyncua decodes it."""

from __future__ import annotations

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.crypto.permission_rules import UserRole
from asyncua.ua.ua_binary import struct_to_binary

from qualitybridge.server.security.access import CALL_REQUESTS, RolePermissionRuleset
from qualitybridge.server.security.identity import QualityBridgeUser, Role

(CALL,) = CALL_REQUESTS
REFRESH = ua.CallMethodRequest(
    ObjectId=ua.NodeId(ua.ObjectIds.ConditionType),
    MethodId=ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
    InputArguments=[ua.Variant(7, ua.VariantType.UInt32)],
)
REFRESH_2 = ua.CallMethodRequest(
    ObjectId=ua.NodeId(ua.ObjectIds.ConditionType),
    MethodId=ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh2),
    InputArguments=[ua.Variant(7, ua.VariantType.UInt32), ua.Variant(3, ua.VariantType.UInt32)],
)
ACKNOWLEDGE = ua.CallMethodRequest(
    ObjectId=ua.NodeId("Order/1/Op/0010/Char/C1.SpcAlarm", 2),
    MethodId=ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
)
REPORT = ua.CallMethodRequest(
    ObjectId=ua.NodeId("QualityBridge", 2), MethodId=ua.NodeId("QualityBridge.ReportMeasurement", 2)
)


def call(*methods: ua.CallMethodRequest) -> Buffer:
    return Buffer(struct_to_binary(ua.CallParameters(MethodsToCall=list(methods))))


def user(role: Role | None, *, revoked: bool = False) -> QualityBridgeUser:
    return QualityBridgeUser(role=UserRole.User, name="someone", account_role=role, revoked=revoked)


@pytest.mark.parametrize("methods", [(REFRESH,), (REFRESH_2,), (REFRESH, REFRESH_2)])
def test_an_observer_may_call_condition_refresh(methods: tuple[ua.CallMethodRequest, ...]) -> None:
    body = call(*methods)
    assert RolePermissionRuleset().check_validity(user(Role.OBSERVER), CALL, body) is True
    assert len(body) == len(call(*methods)), "the body is left for asyncua to decode"


@pytest.mark.parametrize("methods", [(REPORT,), (ACKNOWLEDGE,), (REFRESH, REPORT), (REPORT, REFRESH), ()], ids=str)
def test_an_observer_may_call_nothing_else_not_even_beside_it(methods: tuple[ua.CallMethodRequest, ...]) -> None:
    assert RolePermissionRuleset().check_validity(user(Role.OBSERVER), CALL, call(*methods)) is False


def test_an_undecodable_call_is_refused() -> None:
    truncated = Buffer(struct_to_binary(ua.CallParameters(MethodsToCall=[REFRESH]))[:-3])
    assert RolePermissionRuleset().check_validity(user(Role.OBSERVER), CALL, truncated) is False


def test_only_who_may_subscribe_may_refresh() -> None:
    ruleset = RolePermissionRuleset()
    assert ruleset.check_validity(user(Role.OBSERVER, revoked=True), CALL, call(REFRESH)) is False
    assert ruleset.check_validity(None, CALL, call(REFRESH)) is False
    assert ruleset.check_validity(user(None), CALL, call(REFRESH)) is False  # anonymous, no anonymous reading
    anonymous_readers = RolePermissionRuleset(allow_anonymous_read=True)
    assert anonymous_readers.check_validity(user(None), CALL, call(REFRESH)) is True
    assert anonymous_readers.check_validity(user(None), CALL, call(REPORT)) is False


def test_roles_with_the_call_service_are_unchanged() -> None:
    for role in (Role.MACHINE, Role.OPERATOR, Role.QUALITY_ENGINEER, Role.ADMIN):
        assert RolePermissionRuleset().check_validity(user(role), CALL, call(REPORT, REFRESH)) is True
