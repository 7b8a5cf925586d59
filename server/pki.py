"""Certificate store of the QualityBridge OPC UA server.

Keeps the folder layout OPC UA tools expect (own / trusted / issuer / rejected), creates the server's own
application instance certificate on first start, and decides per client certificate whether a secure channel
may be opened. Client certificates that are not trusted yet are parked in ``rejected/certs`` so an admin can
trust them with one command (``trust_certificate``) while the server keeps running.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.truststore import basic_ca_validator
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_logger = logging.getLogger(__name__)

OWN_CERTIFICATE_NAME = "qualitybridge"
RSA_KEY_BITS = 2048
# A certificate that runs out within this window is replaced at start so it cannot expire during a shift.
RENEW_BEFORE = datetime.timedelta(days=30)
# Small backdating tolerates clocks of clients that run slightly behind the server.
CLOCK_SKEW_ALLOWANCE = datetime.timedelta(hours=1)
CERTIFICATE_SUFFIXES = frozenset({".der", ".pem", ".crt", ".cer"})
CRL_SUFFIXES = frozenset({".der", ".pem", ".crl"})


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


@dataclass(frozen=True)
class CertInfo:
    """What an admin needs to decide about a certificate."""

    thumbprint: str
    subject: str
    not_after: datetime.datetime
    path: Path


def thumbprint(certificate: x509.Certificate) -> str:
    """SHA-1 over the DER encoding, lower-case hex: the thumbprint OPC UA tools display."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return hashlib.sha1(der, usedforsecurity=False).hexdigest()


def load_certificate_bytes(data: bytes) -> x509.Certificate:
    """Parse a certificate that may come as PEM or DER."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.chmod(0o600)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _subject_alt_names(application_uri: str, hostnames: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for hostname in dict.fromkeys(hostnames):
        try:
            address = ipaddress.ip_address(hostname)
        except ValueError:
            names.append(x509.DNSName(hostname))
        else:
            # Clients that connect by IP compare against the IP entry, others against the DNS entry.
            names.append(x509.IPAddress(address))
            names.append(x509.DNSName(hostname))
    return names


def make_self_signed_certificate(
    application_uri: str,
    common_name: str,
    hostnames: Sequence[str],
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> tuple[bytes, bytes]:
    """Create an OPC UA application instance certificate; returns (DER certificate, PEM PKCS#8 private key)."""
    now = datetime.datetime.now(datetime.UTC)
    valid_from = not_before if not_before is not None else now - CLOCK_SKEW_ALLOWANCE
    valid_until = not_after if not_after is not None else now + datetime.timedelta(days=730)
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_until)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(private_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(private_key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(application_uri, hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    certificate = builder.sign(private_key=private_key, algorithm=hashes.SHA256())
    key_pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.DER), key_pem


def _san_uris(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def _san_dns_names(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))


def _reason_to_regenerate(layout: PkiLayout, application_uri: str, hostnames: Sequence[str]) -> str | None:
    cert_path, key_path = layout.own_certificate_path, layout.own_private_key_path
    if not cert_path.is_file():
        return f"no certificate at {cert_path}"
    if not key_path.is_file():
        return f"no private key at {key_path}"
    try:
        certificate = load_certificate_bytes(cert_path.read_bytes())
        private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError as exc:
        return f"certificate or key unreadable ({exc})"
    if not isinstance(private_key, rsa.RSAPrivateKey):
        return "private key is not an RSA key"
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey) or public_key.public_numbers() != (
        private_key.public_key().public_numbers()
    ):
        return "private key does not belong to the certificate"
    if certificate.not_valid_after_utc - RENEW_BEFORE < datetime.datetime.now(datetime.UTC):
        return f"certificate expires {certificate.not_valid_after_utc:%Y-%m-%d}, within {RENEW_BEFORE.days} days"
    if _san_uris(certificate) != [application_uri]:
        return f"SubjectAltName URI {_san_uris(certificate)} differs from application URI {application_uri!r}"
    missing = [name for name in hostnames if name not in _san_dns_names(certificate)]
    if missing:
        return f"hostnames {missing} missing from SubjectAltName"
    return None


def ensure_own_certificate(
    layout: PkiLayout,
    application_uri: str,
    hostnames: Sequence[str],
    *,
    valid_days: int = 730,
) -> tuple[Path, Path]:
    """Return (certificate path, private key path), creating a fresh pair when the existing one is unusable."""
    layout.ensure()
    reason = _reason_to_regenerate(layout, application_uri, hostnames)
    if reason is None:
        return layout.own_certificate_path, layout.own_private_key_path
    _logger.info("Creating server certificate for %s: %s", application_uri, reason)
    now = datetime.datetime.now(datetime.UTC)
    cert_der, key_pem = make_self_signed_certificate(
        application_uri,
        f"QualityBridge@{hostnames[0]}" if hostnames else "QualityBridge",
        hostnames,
        not_before=now - CLOCK_SKEW_ALLOWANCE,
        not_after=now + datetime.timedelta(days=valid_days),
    )
    _write_private(layout.own_private_key_path, key_pem)
    _write_public(layout.own_certificate_path, cert_der)
    return layout.own_certificate_path, layout.own_private_key_path


def _certificate_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in CERTIFICATE_SUFFIXES)


def _read_certificates(folder: Path) -> list[tuple[Path, x509.Certificate]]:
    loaded: list[tuple[Path, x509.Certificate]] = []
    for path in _certificate_files(folder):
        try:
            loaded.append((path, load_certificate_bytes(path.read_bytes())))
        except ValueError:
            _logger.warning("Ignoring unreadable certificate file %s", path)
    return loaded


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

    def _watched_folders(self) -> tuple[Path, ...]:
        layout = self._layout
        return (layout.trusted_certs, layout.trusted_crl, layout.issuer_certs, layout.issuer_crl)

    def _refresh(self) -> None:
        signature = _folder_signature(self._watched_folders())
        if signature == self._signature:
            return
        trusted = [cert for _, cert in _read_certificates(self._layout.trusted_certs)]
        self._trusted_thumbprints = frozenset(thumbprint(cert) for cert in trusted)
        self._trust_anchors = [cert for cert in trusted if _is_ca(cert)]
        self._intermediates = [cert for _, cert in _read_certificates(self._layout.issuer_certs)]
        self._revoked = _read_revoked_serials([self._layout.trusted_crl, self._layout.issuer_crl])
        self._signature = signature
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
            _write_public(target, certificate.public_bytes(serialization.Encoding.DER))
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
        uris = _san_uris(cert)
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
        matches = [cert for _, cert in _read_certificates(layout.rejected_certs) if thumbprint(cert) == wanted]
        if not matches:
            raise FileNotFoundError(
                f"{file_or_thumbprint!r} is neither a certificate file nor the thumbprint of a certificate "
                f"in {layout.rejected_certs}"
            )
        certificate = matches[0]
    fingerprint = thumbprint(certificate)
    target = layout.trusted_certs / f"{fingerprint}.der"
    _write_public(target, certificate.public_bytes(serialization.Encoding.DER))
    for path, rejected in _read_certificates(layout.rejected_certs):
        if thumbprint(rejected) == fingerprint:
            path.unlink()
    _logger.info("Trusted certificate %s (%s)", fingerprint, certificate.subject.rfc4514_string())
    return target


def list_certificates(layout: PkiLayout) -> dict[str, list[CertInfo]]:
    """Trusted and rejected client certificates, for the admin command."""

    def describe(folder: Path) -> list[CertInfo]:
        return [
            CertInfo(thumbprint(cert), cert.subject.rfc4514_string(), cert.not_valid_after_utc, path)
            for path, cert in _read_certificates(folder)
        ]

    return {"trusted": describe(layout.trusted_certs), "rejected": describe(layout.rejected_certs)}
