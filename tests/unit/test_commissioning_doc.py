"""docs/commissioning.md shows the permission tables exactly as the server enforces them.

The tables between the `permission-tables` markers are generated from server/permissions.py and
server/access.py; when they drift this test fails and prints the block to paste (or run
`python -m tests.unit.test_commissioning_doc` to print it).
"""

from __future__ import annotations

from pathlib import Path

from qualitybridge.server.security.access import (
    CALL_REQUESTS,
    READ_REQUESTS,
    WRITE_REQUESTS,
    may_refresh_conditions,
)
from qualitybridge.server.security.access import ROLE_PERMISSIONS as SERVICE_PERMISSIONS
from qualitybridge.server.security.identity import Role
from qualitybridge.server.security.permissions import METHOD_PERMISSIONS, ROLE_PERMISSIONS, Permission
from qualitybridge.server.security.role_set import WELL_KNOWN_ROLES

DOC = Path(__file__).resolve().parents[2] / "docs" / "commissioning.md"
BEGIN = "<!-- permission-tables: generated from server/permissions.py and server/access.py -->"
END = "<!-- /permission-tables -->"

YES, NO = "✔", "—"
PERMISSION_MEANING = {
    Permission.REPORT: "report measurements, confirmations, SPC alarms",
    Permission.CONTROL_ORDERS: "start, interrupt, resume, end, abort an order",
    Permission.ACKNOWLEDGE_ALARMS: "acknowledge alarms",
    Permission.LOCK_GAUGES: "lock gauges",
    Permission.READ_AUDIT: "receive OPC UA AuditEvents",
    Permission.ADMINISTER: "administrative functions over OPC UA",
}
SERVICES = (
    ("Browse, Read, Subscribe (events and data changes)", READ_REQUESTS),
    ("Call (methods; each method then checks its permission below)", CALL_REQUESTS),
    ("Write (only variables whose AccessLevel allows it; none of QualityBridge's do)", WRITE_REQUESTS),
)
_WELL_KNOWN_NAMES = {
    15668: "Observer",
    15680: "Operator",
    16036: "Engineer",
    15704: "SecurityAdmin",
    15716: "ConfigureAdmin",
}


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render_permission_tables() -> str:
    roles = list(Role)
    header = _row(["", *(role.value for role in roles)])
    rule = _row(["---"] * (len(roles) + 1))
    lines = ["**Services** (checked for every request before it runs):", "", header, rule]
    for label, requests in SERVICES:
        lines.append(_row([label, *(YES if requests <= SERVICE_PERMISSIONS[role] else NO for role in roles)]))
    refresh = [YES if may_refresh_conditions(SERVICE_PERMISSIONS[role]) else NO for role in roles]
    lines.append(_row(["Call ConditionRefresh alone (the retained alarms again, OPC UA Part 9)", *refresh]))
    lines.append(_row(["Add/delete nodes and references", *(NO for _ in roles)]))
    lines += ["", "**Permissions** (checked by each method):", ""]
    lines += [_row(["permission", "methods", *(role.value for role in roles)]), _row(["---"] * (len(roles) + 2))]
    for permission in Permission:
        methods = ", ".join(sorted(name for name, needed in METHOD_PERMISSIONS.items() if needed is permission))
        cells = [f"`{permission.value}`: {PERMISSION_MEANING[permission]}", methods or NO]
        cells += [YES if permission in ROLE_PERMISSIONS[role] else NO for role in roles]
        lines.append(_row(cells))
    lines += [
        "",
        "A user added with `--work-centre` (normally a Machine) may use its permissions only for orders and "
        "operations of those work centres; without it, for all.",
    ]
    lines += ["", "**OPC UA well-known roles** (Server.ServerCapabilities.RoleSet, criteria type Role):", ""]
    lines += [_row(["QualityBridge role", "well-known role(s)"]), _row(["---", "---"])]
    for role in roles:
        lines.append(_row([role.value, ", ".join(_WELL_KNOWN_NAMES[i] for i in WELL_KNOWN_ROLES[role])]))
    return "\n".join(lines)


def test_permission_tables_in_the_commissioning_guide_match_the_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert BEGIN in text, f"{DOC} lacks the marker {BEGIN}"
    documented = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    expected = render_permission_tables()
    assert documented == expected, f"docs/commissioning.md is out of date; paste between the markers:\n\n{expected}\n"


def test_every_permission_is_explained() -> None:
    assert set(PERMISSION_MEANING) == set(Permission)


if __name__ == "__main__":
    print(render_permission_tables())
