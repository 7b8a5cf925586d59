"""The server's own application instance certificate and private key on disk: created on first start, checked,
renewed, described and installed.

The own certificate is either self-signed (created here, renewed here before it expires) or signed by the
plant's CA (installed with ``install_own_certificate``; never replaced automatically, only warned about).
Every replaced own certificate and key is kept next to the new one with a ``.replaced-<time>`` suffix.
Loading a new pair into the running server is `own_certificate.OwnCertificateKeeper`'s job.
"""

from __future__ import annotations

import datetime
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from qualitybridge.server.pki.certificates import (
    CLOCK_SKEW_ALLOWANCE,
    is_self_signed,
    load_certificate_bytes,
    make_self_signed_certificate,
    san_dns_names,
    san_uris,
    thumbprint,
)
from qualitybridge.server.pki.layout import PkiLayout, write_private, write_public

# The package's name, as before it was split into modules: logging configurations and tests filter on it.
_logger = logging.getLogger("qualitybridge.server.pki")

# A certificate that runs out within this window is replaced at start so it cannot expire during a shift.
RENEW_BEFORE = datetime.timedelta(days=30)


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
    if san_uris(certificate) != [application_uri]:
        return f"SubjectAltName URI {san_uris(certificate)} differs from application URI {application_uri!r}"
    missing = [name for name in hostnames if name not in san_dns_names(certificate)]
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
    write_private(layout.own_private_key_path, key_pem)
    write_public(layout.own_certificate_path, cert_der)


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
    if application_uri not in san_uris(certificate):
        warnings.append(
            f"the CA-signed server certificate names {san_uris(certificate)}, not the application URI "
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
        uris=tuple(san_uris(certificate)),
        dns_names=tuple(san_dns_names(certificate)),
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
    if application_uri not in san_uris(certificate):
        raise ValueError(
            f"certificate SubjectAltName URIs {san_uris(certificate)} lack the server's application URI "
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
    write_private(layout.own_private_key_path, key_pem)
    write_public(layout.own_certificate_path, certificate.public_bytes(serialization.Encoding.DER))
    _logger.info("Installed own certificate %s issued by %s", thumbprint(certificate), certificate.issuer)
    return describe_own_certificate(layout)
