"""`pki trust|reject|remove` take a thumbprint as `audit-log` prints it (its first 11 digits) when unambiguous."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from qualitybridge.server.pki import PkiLayout, load_certificate_bytes, thumbprint
from tests.harness import make_client_certificate


def qualitybridge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qualitybridge", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_trust_then_reject_by_the_short_thumbprint_audit_log_prints(tmp_path: Path) -> None:
    data = tmp_path / "data"
    layout = PkiLayout(data / "pki")
    layout.ensure()
    client = make_client_certificate(tmp_path / "client")
    full = thumbprint(load_certificate_bytes(client.cert.read_bytes()))
    (layout.rejected_certs / f"{full}.der").write_bytes(client.cert.read_bytes())  # as the server parks a refusal
    short = full[:11]

    trusted = qualitybridge("pki", "trust", short, "--data-dir", str(data))
    assert trusted.returncode == 0, trusted.stderr
    assert (layout.trusted_certs / f"{full}.der").exists()
    assert not any(layout.rejected_certs.iterdir())

    rejected = qualitybridge("pki", "reject", short.upper(), "--data-dir", str(data))
    assert rejected.returncode == 0, rejected.stderr
    assert not (layout.trusted_certs / f"{full}.der").exists()

    unknown = qualitybridge("pki", "trust", "0123456789a", "--data-dir", str(data))
    assert unknown.returncode == 2
    assert "0123456789a" in unknown.stderr
