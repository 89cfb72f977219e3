"""``$(VAR)`` expansion with the kubelet's exact rules.

A port of k8s.io/kubernetes third_party/forked/golang/expansion: ``$(NAME)`` becomes the
value of NAME when it is defined and stays as written when it is not; ``$$`` is an escaped
``$`` (so ``$$(NAME)`` yields the literal ``$(NAME)``); any other ``$`` is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


def mapping_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    """Look a name up in the contexts in order; unknown names expand to themselves."""

    def lookup(name: str) -> str:
        for context in contexts:
            if name in context:
                return context[name]
        return f"$({name})"

    return lookup


def expand(text: str, mapping: Callable[[str], str]) -> str:
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_name(text[cursor + 1 :])
            out.append(mapping(read) if is_var else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def _read_name(rest: str) -> tuple[str, bool, int]:
    if rest[0] == "$":
        return "$", False, 1
    if rest[0] == "(":
        close = rest.find(")", 1)
        if close != -1:
            return rest[1:close], True, close + 1
        return "$(", False, 1
    return "$" + rest[0], False, 1
