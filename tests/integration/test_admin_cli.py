"""The admin commands (`qualitybridge pki|users|audit-log`) run in-process through the CLI's parser."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qualitybridge.cli.administration import parse_since
from qualitybridge.domain.audit import AuditEntry
from qualitybridge.server.pki import PkiLayout, ensure_own_certificate, make_self_signed_certificate
from qualitybridge.server.security.identity import NO_PASSWORD, verify_password
from qualitybridge.store import open_store
from qualitybridge.store.audit_log import AuditLogStore
from tests.harness import invoke_cli
from tests.pki_helpers import TestCa

SERVER_URI = "urn:localhost:qualitybridge"


def run(*args: str) -> tuple[int, str, str]:
    completed = invoke_cli(*args)
    return completed.returncode, completed.stdout, completed.stderr


def _stored(data_dir: Path) -> tuple[list[AuditEntry], dict[str, tuple[str, str, tuple[str, ...], str | None]]]:
    async def read() -> tuple[list[AuditEntry], dict[str, tuple[str, str, tuple[str, ...], str | None]]]:
        store = await open_store(f"sqlite+aiosqlite:///{(data_dir / 'qualitybridge.db').resolve()}")
        try:
            entries = await AuditLogStore(store.engine).entries(limit=1000)
            users = {
                u.name: (u.role, u.password_hash, u.work_centres, u.certificate_thumbprint) for u in await store.users()
            }
        finally:
            await store.aclose()
        return entries, users

    return asyncio.run(read())


def test_users_lifecycle_is_stored_and_audited(tmp_path: Path) -> None:
    target = ("--data-dir", str(tmp_path))
    code, out, _ = run(
        "users", "add", "m7", "--role", "Machine", "--password", "m7-secret!", "--work-centre", "WC-7", *target
    )
    assert code == 0, out
    code, _, err = run("users", "add", "weak", "--role", "Observer", "--password", "short", *target)
    assert (code, err.strip()) == (2, "qualitybridge users add: the password needs at least 8 characters")
    code, _, _ = run("users", "passwd", "m7", "--password", "new-m7-secret", *target)
    assert code == 0
    code, out, _ = run("users", "list", *target)
    assert "m7" in out
    assert "WC-7" in out
    assert "password" in out

    entries, users = _stored(tmp_path)
    role, password_hash, centres, certificate = users["m7"]
    assert (role, centres, certificate) == ("Machine", ("WC-7",), None)
    assert verify_password("new-m7-secret", password_hash)
    assert "weak" not in users
    assert [(e.action, e.status_name, e.node) for e in entries] == [
        ("users add", "Good", "m7"),
        ("users add", "BadInvalidArgument", "weak"),
        ("users passwd", "Good", "m7"),
    ]
    assert entries[0].arguments == "role=Machine, work_centres=WC-7"
    assert all(e.user_name and e.user_name.startswith("os:") for e in entries)
    assert not any("secret" in (e.arguments or "") for e in entries)

    code, _, _ = run("users", "remove", "m7", *target)
    assert code == 0
    code, _, err = run("users", "remove", "m7", *target)
    assert code == 2
    assert "no user 'm7'" in err
    entries, users = _stored(tmp_path)
    assert users == {}
    assert [(e.action, e.status_name) for e in entries[-2:]] == [
        ("users remove", "Good"),
        ("users remove", "BadNotFound"),
    ]


def test_certificate_bound_user(tmp_path: Path) -> None:
    target = ("--data-dir", str(tmp_path))
    badge = TestCa.create("Badge CA").issue("op-1", "urn:badge:op-1")
    cert, _ = badge.write(tmp_path, "op-1", pem=True)
    code, _, err = run("users", "add", "op1", "--role", "Operator", "--certificate", str(cert), *target)
    assert code == 0, err
    code, _, err = run("users", "add", "op2", "--role", "Operator", "--certificate", str(cert), *target)
    assert code == 2
    assert "already bound to user op1" in err
    code, out, _ = run("users", "list", *target)
    assert "cert-only" in out
    assert badge.thumbprint in out
    _, users = _stored(tmp_path)
    assert users["op1"][1:] == (NO_PASSWORD, (), badge.thumbprint)


def test_pki_commands(tmp_path: Path) -> None:
    target = ("--data-dir", str(tmp_path))
    layout = PkiLayout(tmp_path / "pki")
    der, _ = make_self_signed_certificate("urn:panel", "panel", ["localhost"])
    (tmp_path / "panel.der").write_bytes(der)
    code, out, _ = run("pki", "trust", str(tmp_path / "panel.der"), *target)
    assert code == 0
    fingerprint = Path(out.split()[1]).stem
    code, out, _ = run("pki", "list", *target)
    assert out.index(fingerprint) < out.index("issuer:")
    code, out, _ = run("pki", "reject", fingerprint, *target)
    assert code == 0
    assert (layout.rejected_certs / f"{fingerprint}.der").exists()
    code, out, _ = run("pki", "list", *target)
    assert out.index(fingerprint) > out.index("rejected:")
    code, _, err = run("pki", "reject", fingerprint, *target)
    assert code == 2
    assert "no trusted certificate" in err
    code, _, _ = run("pki", "remove", fingerprint, *target)
    assert code == 0
    assert not (layout.rejected_certs / f"{fingerprint}.der").exists()

    code, _, err = run("pki", "show-own", *target)
    assert code == 1
    assert "creates one at its first start" in err
    ensure_own_certificate(layout, SERVER_URI, ["localhost"])
    code, out, _ = run("pki", "show-own", *target)
    assert code == 0
    assert "(self-signed)" in out
    assert SERVER_URI in out

    entries, _ = _stored(tmp_path)
    assert [(e.action, e.status_name) for e in entries] == [
        ("pki trust", "Good"),
        ("pki reject", "Good"),
        ("pki reject", "BadNotFound"),
        ("pki remove", "Good"),
    ]
    assert entries[0].node == fingerprint


def test_install_own_through_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "qb.toml"
    config.write_text('data_dir = "data"\n[server]\nhostname = "qb-host"\n', encoding="utf-8")
    plant = TestCa.create("Plant CA")
    wrong_cert, wrong_key = plant.issue("qb", "urn:other:qualitybridge").write(tmp_path, "wrong")
    code, _, err = run("pki", "install-own", str(wrong_cert), str(wrong_key), "--config", str(config))
    assert code == 2
    assert "urn:qb-host:qualitybridge" in err
    good = plant.issue("qb", "urn:qb-host:qualitybridge", ("qb-host",))
    cert, key = good.write(tmp_path, "good", pem=True)
    code, out, err = run("pki", "install-own", str(cert), str(key), "--config", str(config))
    assert code == 0, err
    assert good.thumbprint in out
    code, out, _ = run("pki", "show-own", "--config", str(config))
    assert "CN=Plant CA" in out
    assert "self-signed" not in out


def test_audit_log_command_filters(tmp_path: Path) -> None:
    target = ("--data-dir", str(tmp_path))
    run("users", "add", "a1", "--role", "Observer", "--password", "a1-secret!", *target)
    run("users", "remove", "nobody", *target)
    code, out, _ = run("audit-log", *target)
    lines = out.splitlines()
    assert code == 0
    assert lines[0].startswith("TIME (UTC)")
    assert "users add" in lines[1]
    assert "BadNotFound" in lines[2]
    code, out, _ = run("audit-log", "--limit", "1", *target)
    assert len(out.splitlines()) == 2
    assert "users remove" in out
    code, out, _ = run("audit-log", "--user", "os:nobody-like-this", *target)
    assert out.splitlines()[1] == "(no entries)"
    code, out, _ = run("audit-log", "--since", "2099-01-01", *target)
    assert out.splitlines()[1] == "(no entries)"
    code, _, err = run("audit-log", "--since", "yesterday", *target)
    assert code == 2
    assert "30m, 2h, 7d" in err


def test_parse_since() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-11-20T06:00") == datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="--since"):
        parse_since("last week")
