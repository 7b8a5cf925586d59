"""`qualitybridge pki list|trust|reject|remove|show-own|install-own`: the server's certificate store.

The work is done by `administration.Administration` (audited, in-process testable); this module is the parser.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qualitybridge.cli.administration import Administration, AdminOutput, run_admin
from qualitybridge.cli.common import add_target

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pki = commands.add_parser(
        "pki", help="certificates: list, trust, reject, remove, show-own, install-own (no restart needed)"
    )
    pki_commands = pki.add_subparsers(dest="pki_command", required=True, metavar="PKI_COMMAND")
    add_target(pki_commands.add_parser("list", help="show trusted, issuer (CA) and rejected certificates"))
    trust = pki_commands.add_parser("trust", help="trust a certificate file or a rejected certificate's thumbprint")
    trust.add_argument("certificate", help="path to a DER/PEM file, or the thumbprint shown by `pki list`")
    add_target(trust)
    for name, what in (
        ("reject", "move a trusted certificate to rejected; its sessions end"),
        ("remove", "delete a certificate from trusted, issuer and rejected"),
    ):
        sub = pki_commands.add_parser(name, help=what)
        sub.add_argument("thumbprint", help="SHA-1 thumbprint as shown by `pki list`")
        add_target(sub)
    add_target(pki_commands.add_parser("show-own", help="the server's own certificate, as clients see it"))
    install = pki_commands.add_parser("install-own", help="replace the server certificate with a plant-CA-signed one")
    install.add_argument("certificate", type=Path, help="certificate (PEM or DER) with the server's ApplicationUri")
    install.add_argument("key", type=Path, help="its private key (PEM or DER, unencrypted RSA)")
    add_target(install)
    pki.set_defaults(run=lambda arguments: run_admin(arguments, _dispatch))


async def _dispatch(admin: Administration, arguments: argparse.Namespace) -> AdminOutput:
    command = arguments.pki_command
    if command == "list":
        return admin.pki_list()
    if command == "trust":
        return await admin.pki_trust(arguments.certificate)
    if command == "reject":
        return await admin.pki_reject(arguments.thumbprint)
    if command == "remove":
        return await admin.pki_remove(arguments.thumbprint)
    if command == "show-own":
        return admin.pki_show_own()
    return await admin.pki_install_own(arguments.certificate, arguments.key)
