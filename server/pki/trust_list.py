"""Which client certificates may open a secure channel: `TrustListValidator`, backed by the trusted/ and issuer/
folders and their CRLs, re-read whenever their listing changes.

Client certificates that are not trusted yet are parked in ``rejected/certs`` so an admin can trust them with
one command (``admin.trust_certificate``) while the server keeps running.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.truststore import basic_ca_validator
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from qualitybridge.server.pki.certificates import read_certificates, san_uris, thumbprint
from qualitybridge.server.pki.layout import PkiLayout, write_public

# The package's name, as before it was split into modules: logging configurations and tests filter on it.
_logger = logging.getLogger("qualitybridge.server.pki")

CRL_SUFFIXES = frozenset({".der", ".pem", ".crl"})


def _read_revoked_serials(folders: Sequence[Path]) -> set[tuple[x509.Name, int]]:
    revoked: set[tuple[x509.Name, int]] = set()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix.lower() not in CRL_SUFFIXES:
                continue
            data = path.read_bytes()
            try:
                crl = (
                    x509.load_pem_x509_crl(data)
                    if data.lstrip().startswith(b"-----BEGIN")
                    else x509.load_der_x509_crl(data)
                )
            except ValueError:
                _logger.warning("Ignoring unreadable CRL file %s", path)
                continue
            revoked.update((crl.issuer, entry.serial_number) for entry in crl)
    return revoked


def _folder_signature(folders: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of all files: changes whenever a file is added, removed or replaced."""
    entries: list[tuple[str, int, int]] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        with os.scandir(folder) as scan:
            for entry in scan:
                stat = entry.stat()
                entries.append((entry.path, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


class TrustListValidator:
    """Certificate validator for ``Server.set_certificate_validator`` backed by the PKI folders.

    Trusted are certificates lying in ``trusted/certs`` and certificates issued by a CA lying there (with
    intermediates from ``issuer/certs``). The folders are re-read when their listing changes, so an admin's
    ``pki trust`` takes effect on the next connection attempt without a restart.
    """

    def __init__(self, layout: PkiLayout) -> None:
        self._layout = layout
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._trusted_thumbprints: frozenset[str] = frozenset()
        self._trust_anchors: list[x509.Certificate] = []
        self._intermediates: list[x509.Certificate] = []
        self._revoked: set[tuple[x509.Name, int]] = set()
        self._revision = 0

    def revision(self) -> int:
        """Grows each time the trust list changed on disk (read again now if needed)."""
        self._refresh()
        return self._revision

    def _watched_folders(self) -> tuple[Path, ...]:
        layout = self._layout
        return (layout.trusted_certs, layout.trusted_crl, layout.issuer_certs, layout.issuer_crl)

    def _refresh(self) -> None:
        signature = _folder_signature(self._watched_folders())
        if signature == self._signature:
            return
        trusted = [cert for _, cert in read_certificates(self._layout.trusted_certs)]
        self._trusted_thumbprints = frozenset(thumbprint(cert) for cert in trusted)
        self._trust_anchors = [cert for cert in trusted if _is_ca(cert)]
        self._intermediates = [cert for _, cert in read_certificates(self._layout.issuer_certs)]
        self._revoked = _read_revoked_serials([self._layout.trusted_crl, self._layout.issuer_crl])
        self._signature = signature
        self._revision += 1
        _logger.debug("Trust list reloaded: %d certificates", len(self._trusted_thumbprints))

    def is_trusted(self, certificate: x509.Certificate) -> bool:
        self._refresh()
        if thumbprint(certificate) in self._trusted_thumbprints:
            return True
        if not self._trust_anchors:
            return False
        return self._chains_to_trusted_ca(certificate)

    def _chains_to_trusted_ca(self, certificate: x509.Certificate) -> bool:
        # Same extension policy as asyncua's TrustStore, but without its stack trace per refusal.
        verification = x509.verification
        builder = verification.PolicyBuilder().extension_policies(
            ca_policy=verification.ExtensionPolicy.permit_all().require_present(
                x509.BasicConstraints, verification.Criticality.AGNOSTIC, basic_ca_validator
            ),
            ee_policy=verification.ExtensionPolicy.permit_all(),
        )
        verifier = builder.store(verification.Store(self._trust_anchors)).build_client_verifier()
        try:
            verifier.verify(certificate, self._intermediates)
        except verification.VerificationError:
            return False
        return True

    def is_revoked(self, certificate: x509.Certificate) -> bool:
        self._refresh()
        return (certificate.issuer, certificate.serial_number) in self._revoked

    def _refuse(self, certificate: x509.Certificate, status: int, reason: str) -> ServiceError:
        _logger.warning(
            "Refused client certificate %s (%s): %s [%s]",
            thumbprint(certificate),
            certificate.subject.rfc4514_string(),
            reason,
            _status_name(status),
        )
        return ServiceError(status)

    def _park_in_rejected(self, certificate: x509.Certificate) -> Path:
        self._layout.rejected_certs.mkdir(parents=True, exist_ok=True)
        target = self._layout.rejected_certs / f"{thumbprint(certificate)}.der"
        if not target.exists():
            write_public(target, certificate.public_bytes(serialization.Encoding.DER))
        return target

    async def __call__(self, cert: x509.Certificate, app_description: ua.ApplicationDescription) -> None:
        self.validate(cert, app_description)

    def validate(self, cert: x509.Certificate, app_description: ua.ApplicationDescription) -> None:
        """Raise ServiceError with the OPC UA status code when the certificate must not open a session."""
        if not self.is_trusted(cert):
            parked = self._park_in_rejected(cert)
            raise self._refuse(
                cert,
                StatusCodes.BadCertificateUntrusted,
                f"not in trust list; stored as {parked} (trust with: pki trust {thumbprint(cert)})",
            )
        now = datetime.datetime.now(datetime.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise self._refuse(
                cert,
                StatusCodes.BadCertificateTimeInvalid,
                f"valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to {cert.not_valid_after_utc:%Y-%m-%d %H:%M}",
            )
        uris = san_uris(cert)
        if app_description.ApplicationUri not in uris:
            raise self._refuse(
                cert,
                StatusCodes.BadCertificateUriInvalid,
                f"ApplicationUri {app_description.ApplicationUri!r} not in SubjectAltName URIs {uris}",
            )
        if self.is_revoked(cert):
            raise self._refuse(cert, StatusCodes.BadCertificateRevoked, "listed in a CRL")


def _status_name(status: int) -> str:
    return ua.StatusCode(ua.UInt32(status)).name


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
