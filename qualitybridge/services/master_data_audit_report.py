"""The master-data audit's result, written three ways: a terminal table, a Markdown report, and JSON for CI.

The JSON schema ("qualitybridge.master-data-audit/1") is documented in docs/master-data.md; the Markdown report is
for a quality manager: each finding with what to do and every record it concerns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from qualitybridge.domain.master_data_audit import CHECK_TITLES, AuditResult, Finding

__all__ = ["JSON_SCHEMA", "audit_json", "audit_markdown", "audit_table", "exit_code", "summary_line"]

JSON_SCHEMA = "qualitybridge.master-data-audit/1"

# How the report names the inputs the JSON keys by `inputs`.
INPUT_NAMES = {
    "erp": "released orders (ERP)",
    "mes_parts": "MES part list",
    "shop_floor_routings": "shop-floor routing versions",
    "qms_catalogue": "QMS characteristic catalogue",
    "cost_centres": "cost-centre list",
    "mappings": "mapping tables",
}

# The Markdown report lists this many records per finding; the JSON always has them all.
MARKDOWN_RECORDS_PER_FINDING = 500
# The terminal names this many records per finding.
TABLE_RECORDS_PER_FINDING = 3


def exit_code(result: AuditResult) -> int:
    """0: no blocking finding; 1: blocking findings (2, could not run, is the CLI's)."""
    return 1 if result.blocking else 0


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary_line(result: AuditResult) -> str:
    blocking, warnings = result.blocking, result.warnings
    parts = [
        f"{_plural(len(blocking), 'blocking finding')} ({_plural(sum(len(f.records) for f in blocking), 'record')})",
        f"{_plural(len(warnings), 'warning')} ({_plural(sum(len(f.records) for f in warnings), 'record')})",
    ]
    if result.skipped:
        parts.append(f"checks not run: {', '.join(sorted({str(s.check) for s in result.skipped}))}")
    return f"master-data audit: {'; '.join(parts)} — exit {exit_code(result)}"


def _label(record: Mapping[str, str]) -> str:
    """What names a record in one word: its key (check 1), its characteristic's path, or its first field."""
    if "characteristic_id" in record:
        return "/".join(record[name] for name in ("material_no", "operation_no", "characteristic_id") if record[name])
    return record.get("key") or next(iter(record.values()), "")


def audit_table(result: AuditResult) -> str:
    rows = [("check", "severity", "records", "finding")]
    for finding in result.findings:
        shown = [_label(record) for record in finding.records[:TABLE_RECORDS_PER_FINDING]]
        more = len(finding.records) - len(shown)
        names = ", ".join(shown) + (f", +{more} more" if more else "")
        rows.append(
            (str(finding.check), finding.severity.value.upper(), str(len(finding.records)), f"{finding.title}: {names}")
        )
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}" for row in rows]
    if len(rows) == 1:
        lines.append("(no findings)")
    for skipped in result.skipped:
        lines.append(f"check {skipped.check} not run ({skipped.part}): needs {skipped.needs}")
    lines.append(summary_line(result))
    return "\n".join(lines)


def _finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "check": finding.check,
        "check_title": CHECK_TITLES[finding.check],
        "code": finding.code,
        "severity": finding.severity.value,
        "title": finding.title,
        "what_to_do": finding.what_to_do,
        "records": [dict(record) for record in finding.records],
    }


def audit_json(result: AuditResult, inputs: Mapping[str, str], generated_at: datetime) -> dict[str, Any]:
    return {
        "schema": JSON_SCHEMA,
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "inputs": dict(inputs),
        "counts": dict(result.counts),
        "summary": {
            "exit_code": exit_code(result),
            "blocking_findings": len(result.blocking),
            "blocking_records": sum(len(f.records) for f in result.blocking),
            "warnings": len(result.warnings),
            "warning_records": sum(len(f.records) for f in result.warnings),
        },
        "findings": [_finding_json(finding) for finding in result.findings],
        "number_ranges": [
            {"system": r.system, "key_kind": r.key_kind, "pattern": r.pattern, "keys": r.keys, "example": r.example}
            for r in result.number_ranges
        ],
        "paths": [{"kind": p.kind, "path": p.path, "via": p.via} for p in result.paths],
        "skipped": [{"check": s.check, "part": s.part, "needs": s.needs} for s in result.skipped],
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(_cell(column) for column in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows),
    ]


def _finding_markdown(finding: Finding) -> list[str]:
    columns: list[str] = []
    for record in finding.records:
        columns.extend(name for name in record if name not in columns)
    shown = finding.records[:MARKDOWN_RECORDS_PER_FINDING]
    lines = [
        f"### Check {finding.check} — {finding.title} ({_plural(len(finding.records), 'record')})",
        "",
        f"`{finding.code}` · **{finding.severity.value}**",
        "",
        f"**What to do:** {finding.what_to_do}",
        "",
        *_markdown_table(columns, [[record.get(column, "") for column in columns] for record in shown]),
    ]
    if len(finding.records) > len(shown):
        lines += ["", f"… and {len(finding.records) - len(shown)} more records (all of them are in the JSON)."]
    return [*lines, ""]


def audit_markdown(result: AuditResult, inputs: Mapping[str, str], generated_at: datetime) -> str:
    lines = [
        "# Master-data audit",
        "",
        f"Run {generated_at:%Y-%m-%d %H:%M} UTC. **{summary_line(result)}**",
        "",
        "Blocking findings make data wrong on the shop floor or make the sync hold it back: fix them before "
        "go-live. Warnings are worth a look. docs/master-data.md explains each check.",
        "",
        "## What was compared",
        "",
        *_markdown_table(("input", "from"), [(INPUT_NAMES.get(key, key), source) for key, source in inputs.items()]),
        "",
    ]
    for title, findings in (("Blocking findings", result.blocking), ("Warnings", result.warnings)):
        lines += [f"## {title}", ""]
        if not findings:
            lines += ["None.", ""]
        for finding in findings:
            lines += _finding_markdown(finding)
    lines += ["## Number ranges per system", ""]
    lines += _markdown_table(
        ("system", "key", "pattern", "keys", "example"),
        [(r.system, r.key_kind, f"`{r.pattern}`", str(r.keys), r.example) for r in result.number_ranges],
    )
    lines += ["", "Pattern: `A` a letter, `9` a digit, anything else as it stands; a fixed prefix is kept.", ""]
    if result.paths:
        lines += ["## How master data gets into QualityBridge", ""]
        lines += _markdown_table(("master data", "path", "via"), [(p.kind, p.path, p.via) for p in result.paths])
        lines.append("")
    if result.skipped:
        lines += ["## Checks not run", ""]
        lines += [f"- Check {s.check} ({s.part}): needs {s.needs}." for s in result.skipped]
        lines.append("")
    return "\n".join(lines)
