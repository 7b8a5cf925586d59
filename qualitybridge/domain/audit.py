"""What the audit trail records: one audited action (login, method call, write, admin change) and how it ended."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["AuditEntry", "AuditKind", "escaped"]


def escaped(text: str) -> str:
    """`text` with what is not valid Unicode written as backslash escapes.

    A string that was not valid UTF-8 on the wire arrives (decoded by asyncua with surrogateescape) holding lone
    surrogates, which no database driver, log file or encoder takes; "op\\udcff" is what a person can read.
    """
    if text.isascii():  # the usual case, and a check in C: ASCII is valid Unicode
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


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

    def escaped(self) -> AuditEntry:
        """This entry with every text escaped (see `escaped`); itself when all is valid Unicode already."""
        if all(not isinstance(value, str) or value.isascii() for value in vars(self).values()):
            return self  # every method call's entry passes here: the usual case without a walk over fields()
        changes: dict[str, Any] = {
            f.name: escaped(value)
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), str) and escaped(value) != value
        }
        return replace(self, **changes) if changes else self

    @property
    def is_good(self) -> bool:
        return self.status_code & 0xC0000000 == 0
