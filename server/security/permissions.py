"""Who may do what: the one permission table every OPC UA method and write is checked against.

The table is documented in docs/commissioning.md; a change here is a change to that table. Service-level
checks (may this session call methods or write at all?) are in `access.RolePermissionRuleset`; this module
decides per method, and for a Machine per work centre.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from qualitybridge.server.security.access import caller
from qualitybridge.server.security.identity import QualityBridgeUser, Role

__all__ = ["METHOD_PERMISSIONS", "ROLE_PERMISSIONS", "AccessDenied", "Permission", "authorize"]

_log = logging.getLogger(__name__)


class Permission(StrEnum):
    REPORT = "report"  # measurements, confirmations, SPC alarms
    CONTROL_ORDERS = "control_orders"  # start, interrupt, resume, end an order
    ACKNOWLEDGE_ALARMS = "acknowledge_alarms"
    LOCK_GAUGES = "lock_gauges"
    READ_AUDIT = "read_audit"  # receive OPC UA AuditEvents (logins, calls, writes of everyone)
    ADMINISTER = "administer"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OBSERVER: frozenset(),
    Role.MACHINE: frozenset({Permission.REPORT}),
    Role.OPERATOR: frozenset({Permission.REPORT, Permission.CONTROL_ORDERS}),
    Role.QUALITY_ENGINEER: frozenset(
        {Permission.REPORT, Permission.CONTROL_ORDERS, Permission.ACKNOWLEDGE_ALARMS, Permission.LOCK_GAUGES}
    ),
    Role.ADMIN: frozenset(Permission),
}

# The permission each method of the QualityBridge object needs (BrowseName → Permission). Every linked method
# must be listed: docs/commissioning.md's role table and the security matrix test are generated from it.
METHOD_PERMISSIONS: dict[str, Permission] = {
    "ReportMeasurement": Permission.REPORT,
    "ReportMeasurements": Permission.REPORT,
    "ReportConfirmation": Permission.REPORT,
    "ReportSpcAlarm": Permission.REPORT,
    "StartOrder": Permission.CONTROL_ORDERS,
    "InterruptOrder": Permission.CONTROL_ORDERS,
    "ResumeOrder": Permission.CONTROL_ORDERS,
    "EndOrder": Permission.CONTROL_ORDERS,
    "AbortOrder": Permission.CONTROL_ORDERS,
    # Not on the QualityBridge object: the standard methods of AcknowledgeableConditionType, called on an
    # SpcAlarmType condition (server/address_space/spc_conditions.py).
    "Acknowledge": Permission.ACKNOWLEDGE_ALARMS,
    "Confirm": Permission.ACKNOWLEDGE_ALARMS,
}


class AccessDenied(Exception):
    """The caller may not do this; maps to BadUserAccessDenied."""


def authorize(permission: Permission, *, work_centre: str | None = None) -> QualityBridgeUser:
    """The calling user, if their role grants `permission` (and, for a restricted user, the work centre).

    A user with work centres configured may act only on orders of those work centres; an unrestricted
    user (no work centres) may act on all.
    """
    user = caller()
    if user is None or user.account_role is None:
        raise AccessDenied(f"{permission.value} needs a logged-in user")
    if permission not in ROLE_PERMISSIONS[user.account_role]:
        _log.warning("denied %s to %s (role %s)", permission.value, user.name, user.account_role.value)
        raise AccessDenied(f"role {user.account_role.value} may not {permission.value}")
    if work_centre is not None and user.work_centres and work_centre not in user.work_centres:
        _log.warning("denied %s to %s for work centre %s", permission.value, user.name, work_centre)
        raise AccessDenied(f"user {user.name} may not {permission.value} for work centre {work_centre}")
    return user
