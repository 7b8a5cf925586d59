"""audit_log and certificate-bound users on each store backend (SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qualitybridge.domain.audit import AuditEntry, AuditKind
from qualitybridge.store import Store, StoredUser
from qualitybridge.store.audit_log import AuditLogStore

BAD_USER_ACCESS_DENIED = 0x801F0000  # above 2**31: needs the BigInteger column on PostgreSQL


def _entry(at: datetime, user: str, action: str = "Call ReportMeasurement", **fields: str) -> AuditEntry:
    return AuditEntry(
        at=at,
        kind=AuditKind.CALL,
        action=action,
        status_code=BAD_USER_ACCESS_DENIED,
        status_name="BadUserAccessDenied",
        user_name=user,
        **fields,
    )


async def test_entries_round_trip_filter_and_purge(store: Store) -> None:
    audit = AuditLogStore(store.engine)
    now = datetime.now(UTC)
    await audit.append(
        [
            _entry(now - timedelta(days=40), "old"),
            _entry(now - timedelta(hours=2), "machine1", remote_address="10.0.0.7:50123", client_thumbprint="ab" * 20),
            _entry(now, "observer", node="ns=2;s=QualityBridge.ReportMeasurement", arguments="x" * 2000),
        ]
    )
    entries = await audit.entries()
    assert [e.user_name for e in entries] == ["old", "machine1", "observer"]
    assert entries[1].status_code == BAD_USER_ACCESS_DENIED
    assert not entries[1].is_good
    assert entries[1].remote_address == "10.0.0.7:50123"
    assert entries[2].arguments is not None
    assert len(entries[2].arguments) == 512
    assert entries[2].arguments.endswith("…")
    assert entries[2].at.tzinfo is not None

    assert [e.user_name for e in await audit.entries(user_name="machine1")] == ["machine1"]
    assert [e.user_name for e in await audit.entries(since=now - timedelta(hours=3))] == ["machine1", "observer"]
    assert [e.user_name for e in await audit.entries(limit=1)] == ["observer"]

    assert await audit.purge(now - timedelta(days=30)) == 1
    assert [e.user_name for e in await audit.entries()] == ["machine1", "observer"]


async def test_user_with_certificate_and_removal(store: Store) -> None:
    await store.save_user(StoredUser("badge7", "Operator", "!", ("WC-1",), certificate_thumbprint="cd" * 20))
    (user,) = await store.users()
    assert user.certificate_thumbprint == "cd" * 20
    assert await store.remove_user("badge7")
    assert not await store.remove_user("badge7")
    assert await store.users() == []
