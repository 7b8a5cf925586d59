"""A small plant CA for tests: CA certificates, CA-signed client and server certificates, CRLs."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qualitybridge.server.pki import thumbprint

_NOW = datetime.datetime.now(datetime.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class IssuedCertificate:
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.certificate)

    def write(self, folder: Path, name: str, *, pem: bool = False) -> tuple[Path, Path]:
        """(certificate file, key file) in `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        cert_path = folder / (f"{name}.pem" if pem else f"{name}.der")
        encoding = serialization.Encoding.PEM if pem else serialization.Encoding.DER
        cert_path.write_bytes(self.certificate.public_bytes(encoding))
        key_path = folder / f"{name}.key.pem"
        key_path.write_bytes(_pem(self.key))
        return cert_path, key_path


@dataclass
class TestCa:
    """A CA that signs application instance certificates and publishes a CRL."""

    __test__ = False  # not a pytest test class

    name: str
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey
    revoked_serials: list[int]

    @classmethod
    def create(cls, name: str = "Plant CA", issuer: TestCa | None = None) -> TestCa:
        key = _key()
        signer_key = issuer.key if issuer else key
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(issuer.certificate.subject if issuer else _name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOW - datetime.timedelta(days=1))
            .not_valid_after(_NOW + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False)
        )
        return cls(name, builder.sign(signer_key, hashes.SHA256()), key, [])

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def issue(
        self,
        common_name: str,
        uri: str,
        dns_names: tuple[str, ...] = ("localhost",),
        *,
        days: int = 365,
        not_before: datetime.datetime | None = None,
    ) -> IssuedCertificate:
        key = _key()
        start = not_before or _NOW - datetime.timedelta(hours=1)
        san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
        san += [x509.DNSName(name) for name in dns_names]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=True,
                    data_encipherment=True,
                    key_agreement=False,
                    key_cert_sign=False,
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
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCertificate(certificate, key)

    def revoke(self, issued: IssuedCertificate) -> None:
        self.revoked_serials.append(issued.certificate.serial_number)

    def crl_der(self) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(_NOW - datetime.timedelta(hours=1))
            .next_update(_NOW + datetime.timedelta(days=30))
        )
        for serial in self.revoked_serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(_NOW).build()
            )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
