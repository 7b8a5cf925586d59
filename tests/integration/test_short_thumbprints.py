"""`pki trust|reject|remove` take a thumbprint as `audit-log` prints it (its first 11 digits) when unambiguous."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qualitybridge.cli.administration import Administration
from qualitybridge.config import QualityBridgeConfig
from qualitybridge.server.pki import CertInfo, PkiLayout, load_certificate_bytes, thumbprint
from tests.harness import invoke_cli, make_client_certificate


def test_trust_then_reject_by_the_short_thumbprint_audit_log_prints(tmp_path: Path) -> None:
    data = tmp_path / "data"
    layout = PkiLayout(data / "pki")
    layout.ensure()
    client = make_client_certificate(tmp_path / "client")
    full = thumbprint(load_certificate_bytes(client.cert.read_bytes()))
    (layout.rejected_certs / f"{full}.der").write_bytes(client.cert.read_bytes())  # as the server parks a refusal
    short = full[:11]

    trusted = invoke_cli("pki", "trust", short, "--data-dir", str(data))
    assert trusted.returncode == 0, trusted.stderr
    assert (layout.trusted_certs / f"{full}.der").exists()
    assert not any(layout.rejected_certs.iterdir())

    rejected = invoke_cli("pki", "reject", short.upper(), "--data-dir", str(data))
    assert rejected.returncode == 0, rejected.stderr
    assert not (layout.trusted_certs / f"{full}.der").exists()

    unknown = invoke_cli("pki", "trust", "0123456789a", "--data-dir", str(data))
    assert unknown.returncode == 2
    assert "0123456789a" in unknown.stderr


async def test_an_ambiguous_prefix_is_refused_naming_the_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two real certificates sharing 7 leading digits would take millions of tries; the listing is what matters.
    from qualitybridge.cli import administration

    expires = datetime.now(UTC) + timedelta(days=1)
    first, second = "abcdef01" + "0" * 32, "abcdef02" + "0" * 32
    listing = {
        "trusted": [],
        "issuer": [],
        "rejected": [CertInfo(t, "CN=x", expires, tmp_path / f"{t}.der") for t in (first, second)],
    }
    monkeypatch.setattr(administration, "list_certificates", lambda _layout: listing)
    config = QualityBridgeConfig(data_dir=tmp_path)
    async with Administration.open(config) as admin:
        output = await admin.pki_trust("abcdef0")
    assert output.exit_code == 2
    assert "matches 2 certificates" in output.errors[0]
    assert first in output.errors[0]
    assert second in output.errors[0]
