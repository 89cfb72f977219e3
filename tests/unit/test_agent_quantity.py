"""Quantities parse exactly like the apiserver's resource.Quantity."""

from __future__ import annotations

from fractions import Fraction

import pytest

from kubeml.local.agent.quantity import ceil_divide, parse_quantity, to_bytes


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
        (".5Ki", 512),
    ],
)
def test_parse(text: str, expected: int | Fraction) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("bad", ["", "Mi", "1Mb", "1 Gi", "abc", "1.2.3"])
def test_malformed(bad: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(bad)


def test_bytes_round_up() -> None:
    assert to_bytes("1500m") == 2
    assert to_bytes(64) == 64


def test_ceil_divide_like_downward_api() -> None:
    assert ceil_divide("500m", "1") == 1
    assert ceil_divide("250m", "1m") == 250
    assert ceil_divide("256Mi", "1Mi") == 256
    assert ceil_divide("1G", "1Mi") == 954  # 953.67 rounded up
    with pytest.raises(ValueError, match="divisor"):
        ceil_divide("1", "0")
