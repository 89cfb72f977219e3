"""Kubernetes resource quantities, parsed exactly once, by the client library's parser.

``kubernetes.utils.parse_quantity`` gives a Decimal for every form the apiserver
admits ("250000u", "1e3", "0.5Gi"); floats would round and some forms crashed a
hand-written parser.
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
