"""QualityBridge roles in terms of OPC UA's well-known roles (Part 18), as far as asyncua 2.1 carries them.

asyncua 2.1 has the RoleSet nodes in its address space (Server.ServerCapabilities.RoleSet with the well-known
roles and their Identities property) but implements none of the role management behind them: AddIdentity /
AddRole have no handlers, RolePermissions and UserRolePermissions are not evaluated, and a session's roles
are not exposed. QualityBridge therefore decides permissions itself (`access`, `permissions`) and uses the
RoleSet to *describe* that model: each well-known role's Identities lists the QualityBridge roles mapped to
it (criteria type Role), AuthenticatedUser maps every logged-in account, Anonymous maps anonymous sessions
where the configuration allows them. User names are not published: asyncua cannot restrict who reads the
RoleSet, and every Observer would learn the account names.
"""

from __future__ import annotations

import logging

from asyncua import Server, ua

from qualitybridge.server.security.identity import QualityBridgeUser, Role

__all__ = ["WELL_KNOWN_ROLES", "publish_role_mapping", "role_ids"]

_log = logging.getLogger(__name__)

_O = ua.ObjectIds
# Machine is an Operator narrowed to the report methods (and to its work centres where configured).
WELL_KNOWN_ROLES: dict[Role, tuple[int, ...]] = {
    Role.OBSERVER: (_O.WellKnownRole_Observer,),
    Role.MACHINE: (_O.WellKnownRole_Operator,),
    Role.OPERATOR: (_O.WellKnownRole_Operator,),
    Role.QUALITY_ENGINEER: (_O.WellKnownRole_Engineer,),
    Role.ADMIN: (_O.WellKnownRole_SecurityAdmin, _O.WellKnownRole_ConfigureAdmin),
}

_IDENTITIES_PROPERTY = {
    _O.WellKnownRole_Anonymous: _O.WellKnownRole_Anonymous_Identities,
    _O.WellKnownRole_AuthenticatedUser: _O.WellKnownRole_AuthenticatedUser_Identities,
    _O.WellKnownRole_Observer: _O.WellKnownRole_Observer_Identities,
    _O.WellKnownRole_Operator: _O.WellKnownRole_Operator_Identities,
    _O.WellKnownRole_Engineer: _O.WellKnownRole_Engineer_Identities,
    _O.WellKnownRole_Supervisor: _O.WellKnownRole_Supervisor_Identities,
    _O.WellKnownRole_SecurityAdmin: _O.WellKnownRole_SecurityAdmin_Identities,
    _O.WellKnownRole_ConfigureAdmin: _O.WellKnownRole_ConfigureAdmin_Identities,
}


def role_ids(user: QualityBridgeUser | None) -> list[ua.NodeId]:
    """The well-known role NodeIds a session user holds (for AuditActivateSession's CurrentRoleIds)."""
    if user is None:
        return []
    if user.account_role is None:
        return [ua.NodeId(ua.Int32(_O.WellKnownRole_Anonymous))]
    ids = [_O.WellKnownRole_AuthenticatedUser, *WELL_KNOWN_ROLES[user.account_role]]
    return [ua.NodeId(ua.Int32(identifier)) for identifier in ids]


def _rule(criteria_type: ua.IdentityCriteriaType, criteria: str = "") -> ua.IdentityMappingRuleType:
    return ua.IdentityMappingRuleType(CriteriaType=criteria_type, Criteria=criteria)


def identities_by_role(*, allow_anonymous: bool) -> dict[int, list[ua.IdentityMappingRuleType]]:
    mapping: dict[int, list[ua.IdentityMappingRuleType]] = {role_id: [] for role_id in _IDENTITIES_PROPERTY}
    mapping[_O.WellKnownRole_AuthenticatedUser].append(_rule(ua.IdentityCriteriaType.AuthenticatedUser))
    if allow_anonymous:
        mapping[_O.WellKnownRole_Anonymous].append(_rule(ua.IdentityCriteriaType.Anonymous))
    for role, well_known in WELL_KNOWN_ROLES.items():
        for role_id in well_known:
            mapping[role_id].append(_rule(ua.IdentityCriteriaType.Role, role.value))
    return mapping


async def publish_role_mapping(server: Server, *, allow_anonymous: bool) -> None:
    """Write each well-known role's Identities (read-only for clients: the property is not writable)."""
    for role_id, rules in identities_by_role(allow_anonymous=allow_anonymous).items():
        node = server.get_node(ua.NodeId(ua.Int32(_IDENTITIES_PROPERTY[role_id])))
        await node.write_value(ua.Variant(rules, ua.VariantType.ExtensionObject))
    _log.debug("RoleSet identities published")
