"""Certificate store of the QualityBridge OPC UA server: the server's own certificate and the trust list.

| module            | what it does                                                                              |
| ----------------- | ----------------------------------------------------------------------------------------- |
| `layout`          | the PKI folders (own, trusted, issuer, rejected); files written atomically, keys 0600     |
| `certificates`    | thumbprints, loading PEM or DER, SubjectAltName entries, self-signed certificates         |
| `own_pair`        | the own certificate and key on disk: created, renewed, warned about, described, installed |
| `own_certificate` | loads a renewed or newly installed own pair into the running asyncua server               |
| `trust_list`      | which client certificates may connect: trusted certificates and CAs, CRLs, rejected/      |
| `admin`           | what ``qualitybridge pki …`` does: trust, reject, remove and list certificates            |

The names below are re-exported so that callers import them from the package, not from its modules.
"""

from qualitybridge.server.pki.admin import (
    CertInfo,
    list_certificates,
    reject_certificate,
    remove_certificate,
    trust_certificate,
)
from qualitybridge.server.pki.certificates import (
    certificate_from_token,
    load_certificate_bytes,
    make_self_signed_certificate,
    thumbprint,
    thumbprint_of_der,
)
from qualitybridge.server.pki.layout import PkiLayout
from qualitybridge.server.pki.own_pair import (
    RENEW_BEFORE,
    OwnCertificateInfo,
    OwnPair,
    describe_own_certificate,
    ensure_own_certificate,
    install_own_certificate,
    own_certificate_warnings,
    read_own_pair,
    renew_own_certificate_if_due,
)
from qualitybridge.server.pki.trust_list import TrustListValidator

__all__ = [
    "RENEW_BEFORE",
    "CertInfo",
    "OwnCertificateInfo",
    "OwnPair",
    "PkiLayout",
    "TrustListValidator",
    "certificate_from_token",
    "describe_own_certificate",
    "ensure_own_certificate",
    "install_own_certificate",
    "list_certificates",
    "load_certificate_bytes",
    "make_self_signed_certificate",
    "own_certificate_warnings",
    "read_own_pair",
    "reject_certificate",
    "remove_certificate",
    "renew_own_certificate_if_due",
    "thumbprint",
    "thumbprint_of_der",
    "trust_certificate",
]
