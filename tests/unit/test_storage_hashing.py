from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeml.storage.hashing import (
    CHUNK,
    canonical_json,
    digest_entries,
    sha256_bytes,
    sha256_file,
    sha256_stream,
)

EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_known_digests() -> None:
    assert sha256_bytes(b"") == EMPTY
    assert sha256_bytes(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_file_digest_is_streamed_over_several_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * (CHUNK // 256 * 3 + 7)  # three chunks and a bit
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == (hashlib.sha256(data).hexdigest(), len(data))


@given(st.binary(max_size=5000))
def test_stream_matches_bytes(data: bytes) -> None:
    assert sha256_stream(io.BytesIO(data)) == (sha256_bytes(data), len(data))


entries = st.lists(
    st.tuples(
        st.text(
            st.characters(blacklist_characters="\t\n", blacklist_categories=["Cs"]),
            min_size=1,
            max_size=20,
        ),
        st.integers(min_value=0, max_value=2**40),
        st.text("0123456789abcdef", min_size=64, max_size=64),
    ),
    max_size=8,
    unique_by=lambda e: e[0],
)


@given(entries, st.randoms())
def test_digest_entries_ignores_order(items: list[tuple[str, int, str]], rnd: object) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert digest_entries(shuffled) == digest_entries(items)


def test_digest_entries_changes_with_name_size_or_digest() -> None:
    base = [("train.parquet", 10, "a" * 64), ("schema.json", 5, "b" * 64)]
    versions = {
        digest_entries(base),
        digest_entries([("train2.parquet", 10, "a" * 64), base[1]]),
        digest_entries([("train.parquet", 11, "a" * 64), base[1]]),
        digest_entries([("train.parquet", 10, "c" * 64), base[1]]),
        digest_entries(base[:1]),
    }
    assert len(versions) == 5


def test_digest_entries_is_case_insensitive_in_the_digest() -> None:
    assert digest_entries([("a", 1, "AB" * 32)]) == digest_entries([("a", 1, "ab" * 32)])


@pytest.mark.parametrize("name", ["a\tb", "a\nb"])
def test_digest_entries_rejects_separators_in_names(name: str) -> None:
    with pytest.raises(ValueError, match="tab or newline"):
        digest_entries([(name, 1, "a" * 64)])


def test_canonical_json_is_deterministic_and_refuses_nan() -> None:
    a = canonical_json({"b": 1, "a": [1.5, None]})
    b = canonical_json(json.loads('{"a": [1.5, null], "b": 1}'))
    assert a == b == b'{"a":[1.5,null],"b":1}\n'
    with pytest.raises(ValueError, match="JSON"):
        canonical_json({"x": float("nan")})
