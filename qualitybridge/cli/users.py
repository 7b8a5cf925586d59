"""`qualitybridge users add|remove|passwd|list`: OPC UA user accounts, taken into effect by the running server.

The work is done by `administration.Administration` (audited, in-process testable); this module is the parser.
"""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path

from qualitybridge.cli.administration import Administration, AdminOutput, run_admin
from qualitybridge.cli.common import add_target

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = commands.add_parser("users", help="OPC UA user accounts: add, remove, passwd, list")
    users_commands = users.add_subparsers(dest="users_command", required=True, metavar="USERS_COMMAND")
    add = users_commands.add_parser("add", help="create or replace a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["Observer", "Machine", "Operator", "QualityEngineer", "Admin"])
    add.add_argument("--password", help="omit to be asked (keeps it out of the shell history)")
    add.add_argument("--work-centre", action="append", help="restrict a Machine to this work centre (repeatable)")
    add.add_argument(
        "--certificate", type=Path, help="bind a certificate (X.509 user token); without --password: certificate only"
    )
    add_target(add)
    remove = users_commands.add_parser("remove", help="delete a user; its open sessions end")
    remove.add_argument("name")
    add_target(remove)
    passwd = users_commands.add_parser("passwd", help="set a new password")
    passwd.add_argument("name")
    passwd.add_argument("--password", help="omit to be asked")
    add_target(passwd)
    add_target(users_commands.add_parser("list", help="list users, roles, work centres and bound certificates"))
    users.set_defaults(run=lambda arguments: run_admin(arguments, _dispatch))


def _password(arguments: argparse.Namespace, required: bool) -> str | None:
    if arguments.password is not None or not required:
        return str(arguments.password) if arguments.password is not None else None
    return getpass.getpass(f"password for {arguments.name}: ")


async def _dispatch(admin: Administration, arguments: argparse.Namespace) -> AdminOutput:
    command = arguments.users_command
    if command == "add":
        return await admin.users_add(
            arguments.name,
            arguments.role,
            password=_password(arguments, required=arguments.certificate is None),
            work_centres=arguments.work_centre or (),
            certificate_file=arguments.certificate,
        )
    if command == "remove":
        return await admin.users_remove(arguments.name)
    if command == "passwd":
        return await admin.users_passwd(arguments.name, _password(arguments, required=True) or "")
    return await admin.users_list()
