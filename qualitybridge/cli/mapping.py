"""`qualitybridge mapping list|import|export|set|remove --kind KIND`: the mapping tables the ERP sync applies.

Works on the store directly (like `users`), so it runs beside a serving QualityBridge: the server reads the tables
at every sync round, and a record held back for want of a mapping appears within one sync interval. Every change,
and every refused import, is written to the audit log with the operating system account that ran the command.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from asyncua import ua

from qualitybridge.cli.administration import Administration, AdminOutput, run_admin
from qualitybridge.cli.common import add_target
from qualitybridge.domain.mapping import InvalidMapping, MappingEntry, MappingKind
from qualitybridge.domain.mapping_csv import COLUMNS, read_mapping_csv, write_mapping_csv

__all__ = [
    "mapping_export",
    "mapping_gaps",
    "mapping_import",
    "mapping_list",
    "mapping_remove",
    "mapping_set",
    "register",
]

_KINDS = ", ".join(f"{kind.value} ({kind.source_name} -> {kind.target_name})" for kind in MappingKind)

_HELP = f"""\
tables: {_KINDS}

examples:
  qualitybridge mapping list --config qualitybridge.toml
  qualitybridge mapping set --kind material 4711-000 P-100-A      ERP material 4711-000 is MES part P-100-A
  qualitybridge mapping set --kind unit mm MMT
  qualitybridge mapping remove --kind material 4711-000
  qualitybridge mapping export --kind material --output materials.csv
  qualitybridge mapping import materials.csv --kind material        the file becomes the whole table
  qualitybridge mapping import more.csv --kind material --merge     adds and changes, removes nothing
  qualitybridge mapping import materials.csv --kind material --dry-run
  qualitybridge mapping gaps                                          what the server holds back, since when

CSV: a header line {",".join(COLUMNS)}, then one line per entry (UTF-8, comma-separated, quotes as usual).
An import is all or nothing: any bad line (empty or duplicate key, unknown column, a unit that is not a UNECE
code) is reported with its line number, exit code 1, and nothing is written. Exit code 2: the command could not
run (file unreadable, bad arguments). A running server applies a change at its next sync round, no restart.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mapping = commands.add_parser(
        "mapping",
        help="mapping tables (ERP material -> MES part, units, ...): list, import, export, set, remove",
        description="The mapping tables the ERP sync applies: a record whose key a table in force "
        "([master_data] required_mappings) does not map is held back, never guessed (docs/master-data.md).",
        epilog=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mapping_commands = mapping.add_subparsers(dest="mapping_command", required=True, metavar="MAPPING_COMMAND")

    listing = mapping_commands.add_parser("list", help="show the entries, with who changed them when")
    _add_kind(listing, required=False)
    add_target(listing)

    importing = mapping_commands.add_parser("import", help="replace a table by a CSV file (all or nothing)")
    importing.add_argument("file", type=Path, help=f"CSV file with the header {','.join(COLUMNS)}")
    _add_kind(importing)
    importing.add_argument("--merge", action="store_true", help="add and change entries, keep the others")
    importing.add_argument("--dry-run", action="store_true", help="check the file and report, write nothing")
    add_target(importing)

    exporting = mapping_commands.add_parser("export", help="write a table as CSV (the form import reads)")
    _add_kind(exporting)
    exporting.add_argument("--output", type=Path, help="file to write (default: standard output)")
    add_target(exporting)

    setting = mapping_commands.add_parser("set", help="add one entry or give its key a new target")
    _add_kind(setting)
    setting.add_argument("source_key", help="the first system's key (e.g. the ERP material number)")
    setting.add_argument("target_key", help="the second system's key (e.g. the MES part number)")
    add_target(setting)

    removing = mapping_commands.add_parser("remove", help="delete one entry")
    _add_kind(removing)
    removing.add_argument("source_key")
    add_target(removing)

    gaps = mapping_commands.add_parser(
        "gaps", help="keys the tables in force lack, with the orders held back and since when (as the server found)"
    )
    add_target(gaps)
    mapping.set_defaults(run=lambda arguments: run_admin(arguments, _dispatch))


def _add_kind(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--kind",
        type=MappingKind,
        choices=list(MappingKind),
        required=required,
        metavar="{" + ",".join(MappingKind) + "}",
        help="which table" + ("" if required else " (default: all four)"),
    )


async def _dispatch(admin: Administration, arguments: argparse.Namespace) -> AdminOutput:
    command = arguments.mapping_command
    if command == "list":
        return await mapping_list(admin, arguments.kind)
    if command == "import":
        return await mapping_import(
            admin, arguments.kind, arguments.file, merge=arguments.merge, dry_run=arguments.dry_run
        )
    if command == "export":
        return await mapping_export(admin, arguments.kind, arguments.output)
    if command == "set":
        return await mapping_set(admin, arguments.kind, arguments.source_key, arguments.target_key)
    if command == "gaps":
        return await mapping_gaps(admin)
    return await mapping_remove(admin, arguments.kind, arguments.source_key)


async def mapping_list(admin: Administration, kind: MappingKind | None) -> AdminOutput:
    output = AdminOutput()
    entries = await admin.store.list_mappings(kind)
    output.say(f"{'TABLE':<15} {'SOURCE KEY':<24} {'TARGET KEY':<24} {'CHANGED (UTC)':<19}  BY")
    for entry in entries:
        changed = f"{entry.changed_at:%Y-%m-%d %H:%M:%S}" if entry.changed_at else "-"
        output.say(
            f"{entry.kind.value:<15} {entry.source_key:<24} {entry.target_key:<24} {changed:<19}  {entry.changed_by}"
        )
    if not entries:
        output.say("(no entries)")
    return output


async def mapping_import(
    admin: Administration, kind: MappingKind, file: Path, *, merge: bool = False, dry_run: bool = False
) -> AdminOutput:
    """Make table `kind` what `file` says (with `merge`: add and change only); every bad line is reported."""
    output = AdminOutput()
    action = "mapping import"
    try:
        text = await asyncio.to_thread(file.read_text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "it is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else (exc.strerror or str(exc))
        await admin.record(action, ua.StatusCodes.BadNotFound, node=kind.value, arguments=f"{file}: {reason}")
        return output.fail(f"qualitybridge {action}: cannot read {file}: {reason}; nothing imported")
    parsed = read_mapping_csv(text, kind, changed_by=admin.actor)
    if parsed.problems:
        count = len(parsed.problems)
        await admin.record(
            action,
            ua.StatusCodes.BadInvalidArgument,
            node=kind.value,
            arguments=f"{file}: {count} problem(s), first: {parsed.problems[0]}",
        )
        output.errors.append(f"qualitybridge {action}: {file}: {count} problem(s), nothing imported:")
        output.errors.extend(f"  {problem}" for problem in parsed.problems)
        output.exit_code = 1
        return output
    before = {entry.source_key: entry for entry in await admin.store.list_mappings(kind)}
    # An entry whose target stays the same keeps who set it and when: `changed_at` says when the mapping changed.
    wanted = {entry.source_key: _kept(before.get(entry.source_key), entry) for entry in parsed.entries}
    table = {**before, **wanted} if merge else wanted
    new = sum(key not in before for key in wanted)
    changed = sum(key in before and before[key].target_key != entry.target_key for key, entry in wanted.items())
    removed = sum(key not in table for key in before)
    summary = (
        f"{kind.value} table: {len(table)} entries ({new} new, {changed} changed, {removed} removed, "
        f"{len(wanted) - new - changed} unchanged)"
    )
    if dry_run:
        output.say(f"{summary}; --dry-run: nothing written")
        return output
    try:
        await admin.store.replace_mappings(kind, sorted(table.values(), key=lambda entry: entry.source_key))
    except InvalidMapping as exc:  # the file was checked; only a concurrent change could get here
        await admin.record(action, ua.StatusCodes.BadInvalidArgument, node=kind.value, arguments=str(exc)[:400])
        return output.fail(f"qualitybridge {action}: {exc}; nothing imported", exit_code=1)
    await admin.record(action, ua.StatusCodes.Good, node=kind.value, arguments=f"{file}: {summary}")
    output.say(f"{summary}; a running server applies it at its next sync round")
    return output


def _kept(before: MappingEntry | None, entry: MappingEntry) -> MappingEntry:
    return before if before is not None and before.target_key == entry.target_key else entry


async def mapping_export(admin: Administration, kind: MappingKind, file: Path | None) -> AdminOutput:
    output = AdminOutput()
    entries = await admin.store.list_mappings(kind)
    text = write_mapping_csv(entries)
    if file is None:
        output.lines.extend(text.splitlines())
        return output
    try:
        await asyncio.to_thread(file.write_text, text, encoding="utf-8")
    except OSError as exc:
        return output.fail(f"qualitybridge mapping export: cannot write {file}: {exc.strerror or exc}")
    output.say(f"{len(entries)} {kind.value} entries written to {file}")
    return output


async def mapping_set(admin: Administration, kind: MappingKind, source_key: str, target_key: str) -> AdminOutput:
    output = AdminOutput()
    node = f"{kind.value} {source_key}"
    try:
        await admin.store.set_mapping(MappingEntry(kind, source_key, target_key, changed_by=admin.actor))
    except InvalidMapping as exc:
        await admin.record("mapping set", ua.StatusCodes.BadInvalidArgument, node=node, arguments=str(exc))
        return output.fail(f"qualitybridge mapping set: {exc}")
    await admin.record("mapping set", ua.StatusCodes.Good, node=node, arguments=f"-> {target_key}")
    output.say(
        f"{kind.source_name} {source_key} -> {kind.target_name} {target_key} saved "
        "(a running server applies it at its next sync round)"
    )
    return output


async def mapping_remove(admin: Administration, kind: MappingKind, source_key: str) -> AdminOutput:
    output = AdminOutput()
    node = f"{kind.value} {source_key}"
    if not await admin.store.remove_mapping(kind, source_key):
        await admin.record("mapping remove", ua.StatusCodes.BadNotFound, node=node)
        return output.fail(f"qualitybridge mapping remove: the {kind.value} table has no entry for {source_key!r}")
    await admin.record("mapping remove", ua.StatusCodes.Good, node=node)
    output.say(
        f"{kind.source_name} {source_key} removed from the {kind.value} table (where the table is in force, a "
        "running server holds its records back from the next sync round)"
    )
    return output


async def mapping_gaps(admin: Administration) -> AdminOutput:
    """The gaps as the server's last sync round recorded them: the lines of Diagnostics/MasterDataGaps."""
    output = AdminOutput()
    gaps = await admin.store.mapping_gaps()
    for gap in gaps:
        output.say(gap.line)
    if not gaps:
        in_force = ", ".join(admin.config.master_data.required_mappings) or "none"
        output.say(f"(no gaps; tables in force: {in_force})")
    return output
