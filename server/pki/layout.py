"""The folders of one PKI root, named like the OPC UA reference stacks and UaExpert name them, and how files are
written into them: replaced atomically, private keys readable by the server account only.

own/certs and own/private hold the server's application instance certificate and key; trusted/ and issuer/ the
client certificates, CAs and CRLs the server accepts; rejected/certs the client certificates it refused, waiting
for an admin's ``pki trust``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

OWN_CERTIFICATE_NAME = "qualitybridge"


@dataclass(frozen=True)
class PkiLayout:
    """Folders of one PKI root, named like the OPC UA reference stacks and UaExpert name them."""

    root: Path

    @property
    def own_certs(self) -> Path:
        return self.root / "own" / "certs"

    @property
    def own_private(self) -> Path:
        return self.root / "own" / "private"

    @property
    def trusted_certs(self) -> Path:
        return self.root / "trusted" / "certs"

    @property
    def trusted_crl(self) -> Path:
        return self.root / "trusted" / "crl"

    @property
    def issuer_certs(self) -> Path:
        return self.root / "issuer" / "certs"

    @property
    def issuer_crl(self) -> Path:
        return self.root / "issuer" / "crl"

    @property
    def rejected_certs(self) -> Path:
        return self.root / "rejected" / "certs"

    @property
    def own_certificate_path(self) -> Path:
        return self.own_certs / f"{OWN_CERTIFICATE_NAME}.der"

    @property
    def own_private_key_path(self) -> Path:
        return self.own_private / f"{OWN_CERTIFICATE_NAME}.pem"

    def folders(self) -> tuple[Path, ...]:
        return (
            self.own_certs,
            self.own_private,
            self.trusted_certs,
            self.trusted_crl,
            self.issuer_certs,
            self.issuer_crl,
            self.rejected_certs,
        )

    def ensure(self) -> None:
        for folder in self.folders():
            folder.mkdir(parents=True, exist_ok=True)
        # Only the server account may list its private key folder.
        self.own_private.chmod(0o700)


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with a file only its owner may read (0600 from the moment it exists)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.chmod(0o600)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    """Replace `path` atomically, so a reader never sees half a certificate."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
