"""Kubernetes resource quantities, parsed in one place, by the client library's parser.

``kubernetes.utils.parse_quantity`` gives an exact Decimal for every form the
apiserver admits ("250000u", "1e3", "0.5Gi"); floats would round, and hand-written
parsers (the operator and the local node agent each had one) disagreed on some forms.
"""

from __future__ import annotations

import math
from decimal import Decimal

from kubernetes.utils.quantity import parse_quantity


def value(quantity: str | int | float) -> Decimal:
    """The exact value; ValueError for something that is not a quantity."""
    return Decimal(parse_quantity(quantity))


def memory_bytes(quantity: str | int | float) -> int:
    """Bytes, rounded up as the kubelet does for a fractional byte count."""
    return math.ceil(value(quantity))


def whole_cpus(quantity: str | int | float) -> int:
    """Cores to use for worker threads: at least one, fractions rounded down."""
    return max(1, math.floor(value(quantity)))


def ceil_divide(quantity: str | int | float, divisor: str | int | float) -> int:
    """``quantity / divisor`` rounded up: the downward API's resourceFieldRef rule."""
    div = value(divisor)
    if div <= 0:
        raise ValueError(f"divisor must be positive: {divisor!r}")
    return math.ceil(value(quantity) / div)
