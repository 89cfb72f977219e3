"""$(VAR) expansion follows the kubelet's rules exactly (cases from its own tests)."""

from __future__ import annotations

import pytest

from kubeml_local.agent.expansion import expand, mapping_for

CONTEXT = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(VAR_A)", "A"),
        ("___$(VAR_B)___", "___B___"),
        ("$(VAR_A)-$(VAR_A)", "A-A"),
        ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
        ("$(VAR_REF)", "$(VAR_A)"),  # no recursion
        ("$(VAR_EMPTY)", ""),
        ("$(UNKNOWN)", "$(UNKNOWN)"),
        ("$$(VAR_A)", "$(VAR_A)"),  # escaped
        ("$$$(VAR_A)", "$A"),
        ("$$$$(VAR_A)", "$$(VAR_A)"),
        ("$(VAR_A", "$(VAR_A"),  # unterminated
        ("$VAR_A", "$VAR_A"),
        ("$", "$"),
        ("x$", "x$"),
        ("$()", "$()"),
        ("f(x)", "f(x)"),
        ("", ""),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, mapping_for(CONTEXT)) == expected


def test_first_context_wins() -> None:
    assert expand("$(X)", mapping_for({"X": "1"}, {"X": "2", "Y": "3"})) == "1"
    assert expand("$(Y)", mapping_for({"X": "1"}, {"X": "2", "Y": "3"})) == "3"
