"""Certificate store of the QualityBridge OPC UA server.

Keeps the folder layout OPC UA tools expect (own / trusted / issuer / rejected), creates the server's own
application instance certificate on first start, and decides per client certificate whether a secure channel
may be opened. Client certificates that are not trusted yet are parked in ``rejected/certs`` so an admin can
trust them with one command (``trust_certificate``) while the server keeps running.

The own certificate is either self-signed (created here, renewed here before it expires) or signed by the
plant's CA (installed with ``install_own_certificate``; never replaced automatically, only warned about).
Every replaced own certificate and key is kept next to the new one with a ``.replaced-<time>`` suffix.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import os
import shutil
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


def _der_length(data: bytes) -> int:
    """Total length of the DER element at the start of `data` (tag, length bytes and content)."""
    if len(data) < 2:
        raise ValueError("truncated DER")
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        raise ValueError("unsupported DER length")
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def certificate_from_token(data: bytes) -> x509.Certificate:
    """The first certificate of DER data that may have its issuer chain appended (X.509 user tokens do)."""
    return x509.load_der_x509_certificate(data[: _der_length(data)])


def thumbprint_of_der(data: bytes) -> str:
    return thumbprint(certificate_from_token(data))


def is_self_signed(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject


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


def _key_mismatch(certificate: x509.Certificate, private_key: object) -> str | None:
    if not isinstance(private_key, rsa.RSAPrivateKey):
        return "private key is not an RSA key (the OPC UA security policies need RSA)"
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey) or public_key.public_numbers() != (
        private_key.public_key().public_numbers()
    ):
        return "private key does not belong to the certificate"
    return None


def _reason_to_regenerate(
    layout: PkiLayout,
    application_uri: str,
    hostnames: Sequence[str],
    *,
    renew_before: datetime.timedelta = RENEW_BEFORE,
    now: datetime.datetime | None = None,
) -> str | None:
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
    mismatch = _key_mismatch(certificate, private_key)
    if mismatch:
        return mismatch
    moment = now or datetime.datetime.now(datetime.UTC)
    if not is_self_signed(certificate):
        # The plant's CA signed it: only an expired one is replaced (the server cannot work with it);
        # renewing it is the plant's job, `own_certificate_warnings` says so in good time.
        if certificate.not_valid_after_utc < moment:
            return f"CA-signed certificate expired {certificate.not_valid_after_utc:%Y-%m-%d}"
        return None
    if certificate.not_valid_after_utc - renew_before < moment:
        return f"certificate expires {certificate.not_valid_after_utc:%Y-%m-%d}, within {renew_before.days} days"
    if _san_uris(certificate) != [application_uri]:
        return f"SubjectAltName URI {_san_uris(certificate)} differs from application URI {application_uri!r}"
    missing = [name for name in hostnames if name not in _san_dns_names(certificate)]
    if missing:
        return f"hostnames {missing} missing from SubjectAltName"
    return None


@dataclass(frozen=True)
class OwnPair:
    """The own certificate and key as read from disk, checked to belong together."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.certificate)


def read_own_pair(layout: PkiLayout) -> OwnPair:
    """Read the own pair; ValueError while it is incomplete or inconsistent (e.g. halfway through an install)."""
    try:
        certificate = load_certificate_bytes(layout.own_certificate_path.read_bytes())
        private_key = serialization.load_pem_private_key(layout.own_private_key_path.read_bytes(), password=None)
    except OSError as exc:
        raise ValueError(str(exc)) from None
    mismatch = _key_mismatch(certificate, private_key)
    if mismatch:
        raise ValueError(mismatch)
    assert isinstance(private_key, rsa.RSAPrivateKey)  # noqa: S101 - _key_mismatch checked it
    return OwnPair(certificate, private_key)


def renew_own_certificate_if_due(
    layout: PkiLayout,
    application_uri: str,
    hostnames: Sequence[str],
    *,
    renew_before: datetime.timedelta = RENEW_BEFORE,
    valid_days: int = 730,
    now: datetime.datetime | None = None,
) -> bool:
    """For the running server: replace a self-signed own certificate that expires within `renew_before`.

    Unlike `ensure_own_certificate` it never touches a pair it cannot read (an admin may be installing one
    right now) nor a CA-signed one; True when it wrote a new pair.
    """
    try:
        pair = read_own_pair(layout)
    except ValueError as exc:
        _logger.warning("Own certificate not checked for renewal: %s", exc)
        return False
    moment = now or datetime.datetime.now(datetime.UTC)
    if not is_self_signed(pair.certificate) or pair.certificate.not_valid_after_utc - renew_before > moment:
        return False
    _logger.warning(
        "Renewing server certificate %s: expires %s, within %d days",
        pair.thumbprint,
        f"{pair.certificate.not_valid_after_utc:%Y-%m-%d}",
        renew_before.days,
    )
    _write_new_own_pair(layout, application_uri, hostnames, valid_days)
    return True


def _write_new_own_pair(layout: PkiLayout, application_uri: str, hostnames: Sequence[str], valid_days: int) -> None:
    now = datetime.datetime.now(datetime.UTC)
    _keep_replaced(layout.own_certificate_path, _stamp(now))
    _keep_replaced(layout.own_private_key_path, _stamp(now))
    cert_der, key_pem = make_self_signed_certificate(
        application_uri,
        f"QualityBridge@{hostnames[0]}" if hostnames else "QualityBridge",
        hostnames,
        not_before=now - CLOCK_SKEW_ALLOWANCE,
        not_after=now + datetime.timedelta(days=valid_days),
    )
    _write_private(layout.own_private_key_path, key_pem)
    _write_public(layout.own_certificate_path, cert_der)


def own_certificate_warnings(
    layout: PkiLayout,
    application_uri: str,
    *,
    renew_before: datetime.timedelta = RENEW_BEFORE,
    now: datetime.datetime | None = None,
) -> list[str]:
    """What an admin must act on about a CA-signed own certificate (self-signed ones renew themselves)."""
    try:
        certificate = load_certificate_bytes(layout.own_certificate_path.read_bytes())
    except (OSError, ValueError):
        return []
    if is_self_signed(certificate):
        return []
    warnings = []
    moment = now or datetime.datetime.now(datetime.UTC)
    if certificate.not_valid_after_utc - renew_before < moment:
        warnings.append(
            f"the CA-signed server certificate expires {certificate.not_valid_after_utc:%Y-%m-%d}: have the plant CA "
            "sign a new one and install it with `qualitybridge pki install-own CERT KEY`"
        )
    if application_uri not in _san_uris(certificate):
        warnings.append(
            f"the CA-signed server certificate names {_san_uris(certificate)}, not the application URI "
            f"{application_uri!r}: clients will refuse it"
        )
    return warnings


def _keep_replaced(path: Path, stamp: str) -> None:
    # A copy, not a move: the running server must never see the own certificate missing.
    if path.is_file():
        shutil.copy2(path, path.with_name(f"{path.name}.replaced-{stamp}"))


def _stamp(now: datetime.datetime) -> str:
    return f"{now:%Y%m%dT%H%M%S}"


def ensure_own_certificate(
    layout: PkiLayout,
    application_uri: str,
    hostnames: Sequence[str],
    *,
    valid_days: int = 730,
    renew_before: datetime.timedelta = RENEW_BEFORE,
) -> tuple[Path, Path]:
    """Return (certificate path, private key path), creating a fresh pair when the existing one is unusable
    or a self-signed one runs out within `renew_before`."""
    layout.ensure()
    reason = _reason_to_regenerate(layout, application_uri, hostnames, renew_before=renew_before)
    if reason is None:
        return layout.own_certificate_path, layout.own_private_key_path
    _logger.warning("Creating server certificate for %s: %s", application_uri, reason)
    _write_new_own_pair(layout, application_uri, hostnames, valid_days)
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
        trusted = [cert for _, cert in _read_certificates(self._layout.trusted_certs)]
        self._trusted_thumbprints = frozenset(thumbprint(cert) for cert in trusted)
        self._trust_anchors = [cert for cert in trusted if _is_ca(cert)]
        self._intermediates = [cert for _, cert in _read_certificates(self._layout.issuer_certs)]
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
    """Trusted, issuer (CA) and rejected certificates, for the admin command."""

    def describe(folder: Path) -> list[CertInfo]:
        return [
            CertInfo(thumbprint(cert), cert.subject.rfc4514_string(), cert.not_valid_after_utc, path)
            for path, cert in _read_certificates(folder)
        ]

    return {
        "trusted": describe(layout.trusted_certs),
        "issuer": describe(layout.issuer_certs),
        "rejected": describe(layout.rejected_certs),
    }


def _matching(folder: Path, wanted: str) -> list[tuple[Path, x509.Certificate]]:
    return [(path, cert) for path, cert in _read_certificates(folder) if thumbprint(cert) == wanted]


def reject_certificate(layout: PkiLayout, certificate_thumbprint: str) -> Path:
    """Move a trusted certificate to rejected/certs: it is refused from the next connection on."""
    layout.ensure()
    wanted = _normalise_thumbprint(certificate_thumbprint)
    matches = _matching(layout.trusted_certs, wanted)
    if not matches:
        raise FileNotFoundError(f"no trusted certificate with thumbprint {certificate_thumbprint!r}")
    target = layout.rejected_certs / f"{wanted}.der"
    _write_public(target, matches[0][1].public_bytes(serialization.Encoding.DER))
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


@dataclass(frozen=True)
class OwnCertificateInfo:
    thumbprint: str
    subject: str
    issuer: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    uris: tuple[str, ...]
    dns_names: tuple[str, ...]
    self_signed: bool
    path: Path


def describe_own_certificate(layout: PkiLayout) -> OwnCertificateInfo:
    """The server's application instance certificate as clients see it (FileNotFoundError before first start)."""
    certificate = load_certificate_bytes(layout.own_certificate_path.read_bytes())
    return OwnCertificateInfo(
        thumbprint=thumbprint(certificate),
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        uris=tuple(_san_uris(certificate)),
        dns_names=tuple(_san_dns_names(certificate)),
        self_signed=is_self_signed(certificate),
        path=layout.own_certificate_path,
    )


def _load_private_key(data: bytes, password: bytes | None) -> object:
    if data.lstrip().startswith(b"-----BEGIN"):
        return serialization.load_pem_private_key(data, password=password)
    return serialization.load_der_private_key(data, password=password)


def install_own_certificate(
    layout: PkiLayout,
    certificate_file: Path,
    key_file: Path,
    *,
    application_uri: str,
    key_password: bytes | None = None,
) -> OwnCertificateInfo:
    """Replace the server's own certificate with one the plant's CA signed (PEM or DER, key PEM or DER).

    Refuses (ValueError, naming the problem) a pair the server could not use: key not matching, not RSA,
    expired, or without the server's application URI in its SubjectAltName. The running server loads it
    within `security.reload_interval_seconds` (`OwnCertificateKeeper`); the replaced pair is kept.
    """
    certificate = load_certificate_bytes(certificate_file.read_bytes())
    try:
        private_key = _load_private_key(key_file.read_bytes(), key_password)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot read private key {key_file}: {exc}") from None
    mismatch = _key_mismatch(certificate, private_key)
    if mismatch:
        raise ValueError(mismatch)
    now = datetime.datetime.now(datetime.UTC)
    if not certificate.not_valid_before_utc - CLOCK_SKEW_ALLOWANCE <= now <= certificate.not_valid_after_utc:
        raise ValueError(
            f"certificate is valid {certificate.not_valid_before_utc:%Y-%m-%d} to "
            f"{certificate.not_valid_after_utc:%Y-%m-%d}, not now"
        )
    if application_uri not in _san_uris(certificate):
        raise ValueError(
            f"certificate SubjectAltName URIs {_san_uris(certificate)} lack the server's application URI "
            f"{application_uri!r}; have the CA put it in (or set server.application_uri to match)"
        )
    assert isinstance(private_key, rsa.RSAPrivateKey)  # noqa: S101 - _key_mismatch checked it
    layout.ensure()
    stamp = _stamp(now)
    _keep_replaced(layout.own_certificate_path, stamp)
    _keep_replaced(layout.own_private_key_path, stamp)
    key_pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    _write_private(layout.own_private_key_path, key_pem)
    _write_public(layout.own_certificate_path, certificate.public_bytes(serialization.Encoding.DER))
    _logger.info("Installed own certificate %s issued by %s", thumbprint(certificate), certificate.issuer)
    return describe_own_certificate(layout)
