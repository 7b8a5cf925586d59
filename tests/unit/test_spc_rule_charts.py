"""docs/spc-rules/*.svg are what docs/spc_rule_charts.py draws from the engine today: well-formed, one per rule, the
rule raised exactly once, at the last point of its planted pattern, and not stale."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from lxml import etree

DOCS = Path(__file__).resolve().parents[2] / "docs"


def charts() -> ModuleType:
    spec = importlib.util.spec_from_file_location("spc_rule_charts", DOCS / "spc_rule_charts.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("rule", range(1, 9))
def test_each_rule_is_raised_once_where_its_pattern_ends(rule: int) -> None:
    module = charts()
    values, pattern = module.stream(rule)
    assert module.judged(values, rule) == [pattern[-1]]


def test_the_committed_charts_are_current_and_well_formed(tmp_path: Path) -> None:
    module = charts()
    fresh = module.write(tmp_path)
    assert [path.name for path in fresh] == [f"rule-{rule}.svg" for rule in range(1, 9)]
    for path in fresh:
        committed = DOCS / "spc-rules" / path.name
        assert committed.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), (
            f"{committed} is stale: run .venv/bin/python docs/spc_rule_charts.py"
        )
        root = etree.fromstring(committed.read_bytes(), etree.XMLParser(resolve_entities=False))
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
