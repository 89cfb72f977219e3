"""Kubernetes resource quantities ("256Mi", "1G", "500m", "1e3") as exact fractions."""

from __future__ import annotations

import math
import re
from fractions import Fraction

_SUFFIXES: dict[str, Fraction] = {
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
# "1E" is one exa, "1E3" is a thousand: the regex tries the suffix first and backtracks into
# the exponent form only when something follows the E.
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE](?P<exp>[+-]?\d+))?$"
)


def parse_quantity(value: str | int | float) -> Fraction:
    """Exact value of a quantity; raises ValueError for malformed input."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return Fraction(value)
    match = _QUANTITY.match(value.strip())
    if not match:
        raise ValueError(f"not a quantity: {value!r}")
    number = Fraction(match["num"])
    if match["exp"] is not None:
        return number * Fraction(10) ** int(match["exp"])
    return number * _SUFFIXES[match["suffix"] or ""]


def to_bytes(value: str | int | float) -> int:
    """Bytes of a memory quantity, rounded up like the kubelet does for fractional bytes."""
    return math.ceil(parse_quantity(value))


def ceil_divide(value: str | int | float, divisor: str | int | float) -> int:
    """``value / divisor`` rounded up: the downward API's resourceFieldRef rule."""
    div = parse_quantity(divisor)
    if div <= 0:
        raise ValueError(f"divisor must be positive: {divisor!r}")
    return math.ceil(parse_quantity(value) / div)
