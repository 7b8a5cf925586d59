"""UNECE Recommendation 20 unit codes used on inspection characteristics, with their symbols.

OPC UA identifies engineering units by these codes (OPC UA Part 8, EUInformation); the symbol is what an
HMI shows. Codes not listed here still work: the code itself is then shown.
"""

from __future__ import annotations

__all__ = ["UNECE_UNITS", "unit_description", "unit_id", "unit_symbol"]

UNECE_UNITS: dict[str, tuple[str, str]] = {
    "MMT": ("mm", "millimetre"),
    "4H": ("µm", "micrometre"),
    "CMT": ("cm", "centimetre"),
    "MTR": ("m", "metre"),
    "NU": ("N·m", "newton metre"),
    "NEW": ("N", "newton"),
    "CEL": ("°C", "degree Celsius"),
    "DD": ("°", "degree (angle)"),
    "KGM": ("kg", "kilogram"),
    "GRM": ("g", "gram"),
    "BAR": ("bar", "bar"),
    "P1": ("%", "percent"),
    "C62": ("", "one (piece count)"),
    "SEC": ("s", "second"),
    "HTZ": ("Hz", "hertz"),
    "VLT": ("V", "volt"),
    "AMP": ("A", "ampere"),
}


def unit_symbol(code: str) -> str:
    return UNECE_UNITS.get(code, (code, code))[0]


def unit_description(code: str) -> str:
    return UNECE_UNITS.get(code, (code, code))[1]


def unit_id(code: str) -> int:
    """The UnitId OPC UA derives from a UNECE common code: its ASCII bytes packed big-endian (Part 8)."""
    packed = 0
    for char in code.upper()[:3]:
        packed = (packed << 8) | ord(char)
    return packed
