"""Quantities, parsed once for the operator and the local node agent."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from kubeml.quantity import ceil_divide, memory_bytes, value, whole_cpus


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("256Mi", 256 * 2**20),
        ("1Gi", 2**30),
        ("1G", 10**9),
        ("512M", 512 * 10**6),
        ("128974848", 128974848),
        ("129e6", 129 * 10**6),
        ("1E3", 1000),
        ("1E", 10**18),
        ("100k", 100_000),
        ("1.5Gi", 3 * 2**29),
        ("0.5", Fraction(1, 2)),
        ("500m", Fraction(1, 2)),
        ("250000u", Fraction(1, 4)),
        (".5Ki", 512),
    ],
)
def test_parse(text: str, expected: int | Fraction) -> None:
    exact = value(text)
    assert isinstance(exact, Decimal)
    assert Fraction(exact) == expected


@pytest.mark.parametrize("bad", ["", "Mi", "1Mb", "abc", "1.2.3"])
def test_malformed(bad: str) -> None:
    with pytest.raises(ValueError, match="Invalid number format"):
        value(bad)


def test_bytes_round_up_and_cpus_round_down_to_at_least_one() -> None:
    assert memory_bytes("1500m") == 2
    assert memory_bytes(64) == 64
    assert [whole_cpus(q) for q in ("250000u", "500m", "1", "1500m", "2", "4e0")] == [
        1,
        1,
        1,
        1,
        2,
        4,
    ]


def test_ceil_divide_like_downward_api() -> None:
    assert ceil_divide("500m", "1") == 1
    assert ceil_divide("250m", "1m") == 250
    assert ceil_divide("256Mi", "1Mi") == 256
    assert ceil_divide("1G", "1Mi") == 954  # 953.67 rounded up
    with pytest.raises(ValueError, match="divisor"):
        ceil_divide("1", "0")
