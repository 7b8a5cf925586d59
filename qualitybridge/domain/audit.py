"""What the audit trail records: one audited action (login, method call, write, admin change) and how it ended."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = ["AuditEntry", "AuditKind"]


class AuditKind(StrEnum):
    SESSION = "session"  # CreateSession (certificate checks) and ActivateSession (login)
    CALL = "call"
    WRITE = "write"
    SERVICE = "service"  # any other service request the role may not use (e.g. AddNodes)
    ADMIN = "admin"  # PKI and user changes through the CLI, certificate renewal by the server


@dataclass(frozen=True)
class AuditEntry:
    """One audited action and how it ended (status_code is the OPC UA StatusCode, 0 = Good)."""

    at: datetime
    kind: AuditKind
    action: str
    status_code: int
    status_name: str
    user_name: str | None = None
    client_thumbprint: str | None = None
    remote_address: str | None = None
    node: str | None = None
    arguments: str | None = None
    id: int | None = None

    @property
    def is_good(self) -> bool:
        return self.status_code & 0xC0000000 == 0
