"""Checking OPC UA method arguments, because asyncua hands handlers whatever Variants the client sent.

Each method declares its inputs once (`ArgumentSpec`); `parse_arguments` turns the raw Variants into Python
values or raises `ArgumentError` carrying the StatusCode for the call and the one for the offending argument.
An array argument (`array=True`) is checked as a whole for its type and handed back as a list of raw elements;
`parse_element` then checks one element by the same rules as a scalar, so that a batch can refuse one entry
without refusing the call. A string that was not valid UTF-8 on the wire is BadInvalidArgument (per element);
an array of another rank than declared (a matrix for a 1-D array) is BadTypeMismatch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua import ua

__all__ = [
    "ArgumentError",
    "ArgumentSpec",
    "is_valid_unicode",
    "parse_arguments",
    "parse_element",
    "status_code",
]

_NULL_DATETIME = datetime(1601, 1, 1, tzinfo=UTC)


def is_valid_unicode(text: str) -> bool:
    """False for a string that was not valid UTF-8 on the wire: asyncua decodes such bytes with surrogateescape,
    into lone surrogates that cannot be stored, logged to a file or encoded again."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def status_code(code: int) -> ua.StatusCode:
    """A StatusCode from one of ua.StatusCodes' plain ints (asyncua types the field as its UInt32 subclass)."""
    return ua.StatusCode(ua.UInt32(code))


@dataclass(frozen=True)
class ArgumentSpec:
    name: str
    types: tuple[ua.VariantType, ...]
    required: bool = True
    max_length: int = 0  # strings: 0 = unlimited
    array: bool = False  # a one-dimensional array; each element follows the rules above
    # May be left out by a caller (only trailing arguments): added to a method after clients were written
    # against it, so that they keep working. Left out, it reads as an empty string.
    omittable: bool = False

    @property
    def type_names(self) -> str:
        return " or ".join(t.name for t in self.types)


class ArgumentError(Exception):
    """An input argument is unusable; `index` is its position (None when the count is wrong)."""

    def __init__(self, status: int, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.index = index


def parse_arguments(specs: Sequence[ArgumentSpec], arguments: Sequence[ua.Variant]) -> dict[str, Any]:
    left_out = specs[len(arguments) :]
    if any(not spec.omittable for spec in left_out):
        missing = ", ".join(spec.name for spec in left_out)
        raise ArgumentError(ua.StatusCodes.BadArgumentsMissing, f"missing arguments: {missing}")
    if len(arguments) > len(specs):
        raise ArgumentError(
            ua.StatusCodes.BadTooManyArguments, f"expected {len(specs)} arguments, got {len(arguments)}"
        )
    values: dict[str, Any] = {spec.name: "" for spec in left_out}
    for index, (spec, variant) in enumerate(zip(specs, arguments, strict=False)):
        values[spec.name] = _parse_one(spec, variant, index)
    return values


def _rank(variant: ua.Variant) -> int:
    """0 for a scalar, 1 for an array, the number of dimensions of a matrix (asyncua nests its rows as lists)."""
    if not variant.is_array:
        return 0
    if variant.Dimensions:
        return len(variant.Dimensions)
    return 2 if any(isinstance(element, list) for element in variant.Value or []) else 1


def _parse_one(spec: ArgumentSpec, variant: ua.Variant, index: int) -> Any:
    shape_matches = isinstance(variant, ua.Variant) and _rank(variant) == (1 if spec.array else 0)
    if not shape_matches or variant.VariantType not in spec.types:
        sent = variant.VariantType.name if isinstance(variant, ua.Variant) else type(variant).__name__
        if isinstance(variant, ua.Variant) and _rank(variant) > 1:
            sent = f"{_rank(variant)}-dimensional array of {sent}"
        elif isinstance(variant, ua.Variant) and variant.is_array:
            sent = f"array of {sent}"
        expected = f"an array of {spec.type_names}" if spec.array else f"a scalar {spec.type_names}"
        raise ArgumentError(ua.StatusCodes.BadTypeMismatch, f"{spec.name} must be {expected}, got {sent}", index)
    if spec.array:
        return list(variant.Value or [])  # a null array counts as an empty one
    return parse_element(spec, variant.Value, index)


def parse_element(spec: ArgumentSpec, value: Any, index: int) -> Any:
    """Check one value (a scalar argument, or one element of an array argument) against `spec`."""
    if ua.VariantType.String in spec.types:
        if not is_valid_unicode(value or ""):
            raise ArgumentError(ua.StatusCodes.BadInvalidArgument, f"{spec.name} is not valid UTF-8", index)
        text = (value or "").strip()
        if spec.required and not text:
            raise ArgumentError(ua.StatusCodes.BadInvalidArgument, f"{spec.name} must not be empty", index)
        if spec.max_length and len(text) > spec.max_length:
            raise ArgumentError(
                ua.StatusCodes.BadOutOfRange, f"{spec.name} is longer than {spec.max_length} characters", index
            )
        return text
    if ua.VariantType.Double in spec.types or ua.VariantType.Float in spec.types:
        number = float(value)
        if not math.isfinite(number):
            raise ArgumentError(
                ua.StatusCodes.BadOutOfRange, f"{spec.name} must be a finite number, got {number}", index
            )
        return number
    if ua.VariantType.DateTime in spec.types:
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        if moment <= _NULL_DATETIME:
            raise ArgumentError(ua.StatusCodes.BadInvalidArgument, f"{spec.name} is the null DateTime", index)
        return moment
    return value
