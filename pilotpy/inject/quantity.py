"""Kubernetes resource quantities ("100m", "1Gi", "2e3"): validation and the canonical form
the API server (and istiod, whose patches carry Go's `resource.Quantity`) writes them in:
"2000m" is "2", "1024Mi" is "1Gi", "1000" is "1k", "0.5" is "500m"."""

from __future__ import annotations

import re
from fractions import Fraction

_NUMBER = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(.*)$")
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
            "E": 18}
_DECIMAL_SUFFIX = {exponent: suffix for suffix, exponent in _DECIMAL.items()}
_EXPONENT = re.compile(r"^[eE]([+-]?\d+)$")


class QuantityError(ValueError):
    pass


def _parse(text: str) -> tuple[Fraction, str]:
    """(value, format): format is "binary", "decimal" or "exponent", as the suffix says."""
    match = _NUMBER.match(text)
    if match is None:
        raise QuantityError("quantities must match the regular expression "
                            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    sign, digits, suffix = match.groups()
    value = Fraction(digits)
    if sign == "-":
        value = -value
    if suffix in _BINARY:
        return value * 2 ** _BINARY[suffix], "binary"
    if suffix in _DECIMAL:
        return value * Fraction(10) ** _DECIMAL[suffix], "decimal"
    exponent = _EXPONENT.match(suffix)
    if exponent is not None:
        return value * Fraction(10) ** int(exponent.group(1)), "exponent"
    raise QuantityError(f"unable to parse quantity's suffix {suffix!r}")


def validate(text: str) -> None:
    """Raise QuantityError unless `text` is a quantity."""
    _parse(text)


def value(text: str) -> Fraction:
    """The amount a quantity stands for (cores, bytes); raises QuantityError."""
    return _parse(text)[0]


def canonical(text: str) -> str:
    """The canonical form of a quantity (Go's Quantity.String()); raises QuantityError."""
    value, form = _parse(text)
    if value == 0:
        return "0"
    # Values below a nanounit round up to it, as the API server does.
    nanos = value * 10 ** 9
    if nanos.denominator != 1:
        value = Fraction(-((-nanos.numerator) // nanos.denominator), 10 ** 9)
    if form == "binary" and (abs(value) < 1024 or value.denominator != 1):
        form = "decimal"  # small or fractional byte counts read better in decimal
    if form == "binary":
        amount, shift = int(value), 0
        while shift < 60 and amount % 1024 == 0:
            amount //= 1024
            shift += 10
        suffix = next((s for s, bits in _BINARY.items() if bits == shift), "")
        return f"{amount}{suffix}"
    mantissa, exponent = _decimal(value)
    if form == "exponent":
        return f"{mantissa}e{exponent}" if exponent else str(mantissa)
    return f"{mantissa}{_DECIMAL_SUFFIX[exponent]}"


def _decimal(value: Fraction) -> tuple[int, int]:
    """value = mantissa * 10**exponent with an integral mantissa and the largest exponent
    that is a multiple of 3 between -9 and 18."""
    exponent = 18
    while exponent > -9:
        scaled = value / Fraction(10) ** exponent
        if scaled.denominator == 1:
            return int(scaled), exponent
        exponent -= 3
    return int(value * 10 ** 9), -9
