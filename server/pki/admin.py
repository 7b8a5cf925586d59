"""What the admin commands (``qualitybridge pki …``) do to the trust list: trust a certificate (a file, or a
refused one by thumbprint), reject or remove one, list them all.

They only change files; the running server notices on its next look at the folders (`trust_list`).
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from qualitybridge.server.pki.certificates import load_certificate_bytes, read_certificates, thumbprint
from qualitybridge.server.pki.layout import PkiLayout, write_public

# The package's name, as before it was split into modules: logging configurations and tests filter on it.
_logger = logging.getLogger("qualitybridge.server.pki")


@dataclass(frozen=True)
class CertInfo:
    """What an admin needs to decide about a certificate."""

    thumbprint: str
    subject: str
    not_after: datetime.datetime
    path: Path


def _normalise_thumbprint(text: str) -> str:
    return text.strip().replace(":", "").replace(" ", "").lower()


def trust_certificate(layout: PkiLayout, file_or_thumbprint: str) -> Path:
    """Put a certificate file (DER or PEM) or a rejected certificate (by thumbprint) into the trust list."""
    layout.ensure()
    candidate = Path(file_or_thumbprint)
    if candidate.is_file():
        certificate = load_certificate_bytes(candidate.read_bytes())
    else:
        wanted = _normalise_thumbprint(file_or_thumbprint)
        matches = [cert for _, cert in read_certificates(layout.rejected_certs) if thumbprint(cert) == wanted]
        if not matches:
            raise FileNotFoundError(
                f"{file_or_thumbprint!r} is neither a certificate file nor the thumbprint of a certificate "
                f"in {layout.rejected_certs}"
            )
        certificate = matches[0]
    fingerprint = thumbprint(certificate)
    target = layout.trusted_certs / f"{fingerprint}.der"
    write_public(target, certificate.public_bytes(serialization.Encoding.DER))
    for path, rejected in read_certificates(layout.rejected_certs):
        if thumbprint(rejected) == fingerprint:
            path.unlink()
    _logger.info("Trusted certificate %s (%s)", fingerprint, certificate.subject.rfc4514_string())
    return target


def list_certificates(layout: PkiLayout) -> dict[str, list[CertInfo]]:
    """Trusted, issuer (CA) and rejected certificates, for the admin command."""

    def describe(folder: Path) -> list[CertInfo]:
        return [
            CertInfo(thumbprint(cert), cert.subject.rfc4514_string(), cert.not_valid_after_utc, path)
            for path, cert in read_certificates(folder)
        ]

    return {
        "trusted": describe(layout.trusted_certs),
        "issuer": describe(layout.issuer_certs),
        "rejected": describe(layout.rejected_certs),
    }


def _matching(folder: Path, wanted: str) -> list[tuple[Path, x509.Certificate]]:
    return [(path, cert) for path, cert in read_certificates(folder) if thumbprint(cert) == wanted]


def reject_certificate(layout: PkiLayout, certificate_thumbprint: str) -> Path:
    """Move a trusted certificate to rejected/certs: it is refused from the next connection on."""
    layout.ensure()
    wanted = _normalise_thumbprint(certificate_thumbprint)
    matches = _matching(layout.trusted_certs, wanted)
    if not matches:
        raise FileNotFoundError(f"no trusted certificate with thumbprint {certificate_thumbprint!r}")
    target = layout.rejected_certs / f"{wanted}.der"
    write_public(target, matches[0][1].public_bytes(serialization.Encoding.DER))
    for path, _ in matches:
        path.unlink()
    _logger.info("Rejected certificate %s (%s)", wanted, matches[0][1].subject.rfc4514_string())
    return target


def remove_certificate(layout: PkiLayout, certificate_thumbprint: str) -> list[Path]:
    """Delete a certificate from trusted, issuer and rejected; returns the files removed."""
    wanted = _normalise_thumbprint(certificate_thumbprint)
    removed = [
        path
        for folder in (layout.trusted_certs, layout.issuer_certs, layout.rejected_certs)
        for path, _ in _matching(folder, wanted)
    ]
    if not removed:
        raise FileNotFoundError(f"no certificate with thumbprint {certificate_thumbprint!r} in {layout.root}")
    for path in removed:
        path.unlink()
    _logger.info("Removed certificate %s (%s)", wanted, ", ".join(str(path) for path in removed))
    return removed
