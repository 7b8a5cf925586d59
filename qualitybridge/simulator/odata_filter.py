"""The small part of OData V2 `$filter` the SAP face understands: `Field op 'literal'` joined by and/or, parentheses.

Operators eq, ne, gt, ge, lt, le on strings; numeric-looking keys compare by ALPHA conversion ('00042' eq '42'),
as SAP does. `index_values` tells which values of one field a filter can match at all, so that the simulator can
answer `(ManufacturingOrder eq 'a' or ManufacturingOrder eq 'b')` from an index instead of a scan.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Comparison", "FilterError", "Junction", "Node", "index_values", "matches", "parse_filter"]

_TOKEN = re.compile(r"\s*(?:(\()|(\))|'((?:[^']|'')*)'|([A-Za-z_][A-Za-z0-9_]*)|(-?\d+(?:\.\d+)?))")
_OPERATORS = {"eq", "ne", "gt", "ge", "lt", "le"}


class FilterError(ValueError):
    """The filter is not one the simulator understands (SAP would answer 400 too)."""


@dataclass(frozen=True)
class Comparison:
    field: str
    operator: str
    value: str


@dataclass(frozen=True)
class Junction:
    operator: str  # "and" | "or"
    parts: tuple[Node, ...]


Node = Comparison | Junction


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise FilterError(f"cannot read $filter at {text[position : position + 20]!r}")
        opening, closing, string, word, number = match.groups()
        if opening:
            found.append(("(", "("))
        elif closing:
            found.append((")", ")"))
        elif string is not None:
            found.append(("literal", string.replace("''", "'")))
        elif number is not None:
            found.append(("literal", number))
        else:
            found.append(("word", word))
        position = match.end()
    return found


def parse_filter(text: str) -> Node:
    tokens = _tokens(text)
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal position
        if position >= len(tokens):
            raise FilterError("$filter ends too early")
        position += 1
        return tokens[position - 1]

    def junction(operator: str, inner: Callable[[], Node]) -> Node:
        parts = [inner()]
        while (token := peek()) is not None and token == ("word", operator):
            take()
            parts.append(inner())
        return parts[0] if len(parts) == 1 else Junction(operator, tuple(parts))

    def factor() -> Node:
        kind, value = take()
        if kind == "(":
            node = expression()
            if take()[0] != ")":
                raise FilterError("unbalanced parentheses in $filter")
            return node
        if kind != "word":
            raise FilterError(f"expected a property name, got {value!r}")
        operator_kind, operator = take()
        if operator_kind != "word" or operator not in _OPERATORS:
            raise FilterError(f"unsupported operator {operator!r}")
        literal_kind, literal = take()
        if literal_kind != "literal":
            raise FilterError(f"expected a literal after {value} {operator}")
        return Comparison(value, operator, literal)

    def term() -> Node:
        return junction("and", factor)

    def expression() -> Node:
        return junction("or", term)

    node = expression()
    if position != len(tokens):
        raise FilterError(f"unexpected {tokens[position][1]!r} in $filter")
    return node


def _alpha(value: str) -> str:
    return (value.lstrip("0") or "0") if value.isdigit() else value


def _compare(actual: Any, operator: str, expected: str) -> bool:
    left, right = _alpha(str(actual if actual is not None else "")), _alpha(expected)
    if left.isdigit() and right.isdigit() and operator not in ("eq", "ne"):
        left, right = left.zfill(40), right.zfill(40)
    return {
        "eq": left == right,
        "ne": left != right,
        "gt": left > right,
        "ge": left >= right,
        "lt": left < right,
        "le": left <= right,
    }[operator]


def matches(node: Node, entity: dict[str, Any]) -> bool:
    if isinstance(node, Comparison):
        if node.field not in entity:
            raise FilterError(f"property {node.field} does not exist")
        return _compare(entity[node.field], node.operator, node.value)
    if node.operator == "and":
        return all(matches(part, entity) for part in node.parts)
    return any(matches(part, entity) for part in node.parts)


def index_values(node: Node, field: str) -> set[str] | None:
    """The ALPHA-normalised values of `field` an entity must have to match, or None if the filter does not say."""
    if isinstance(node, Comparison):
        return {_alpha(node.value)} if node.field == field and node.operator == "eq" else None
    found = [index_values(part, field) for part in node.parts]
    if node.operator == "or":
        if any(values is None for values in found):
            return None
        return set().union(*(values for values in found if values is not None))
    narrowed = [values for values in found if values is not None]
    return set.intersection(*narrowed) if narrowed else None
