"""X.509 certificates as OPC UA uses them: thumbprints, loading PEM or DER, reading a folder of them, the
SubjectAltName entries OPC UA checks, and creating a self-signed application instance certificate.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The package's name, as before it was split into modules: logging configurations and tests filter on it.
_logger = logging.getLogger("qualitybridge.server.pki")

RSA_KEY_BITS = 2048
# Small backdating tolerates clocks of clients that run slightly behind the server.
CLOCK_SKEW_ALLOWANCE = datetime.timedelta(hours=1)
CERTIFICATE_SUFFIXES = frozenset({".der", ".pem", ".crt", ".cer"})


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


def certificate_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in CERTIFICATE_SUFFIXES)


def read_certificates(folder: Path) -> list[tuple[Path, x509.Certificate]]:
    """The certificates of a folder with their files; unreadable files are logged and skipped."""
    loaded: list[tuple[Path, x509.Certificate]] = []
    for path in certificate_files(folder):
        try:
            loaded.append((path, load_certificate_bytes(path.read_bytes())))
        except ValueError:
            _logger.warning("Ignoring unreadable certificate file %s", path)
    return loaded


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


def san_uris(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def san_dns_names(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))


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
