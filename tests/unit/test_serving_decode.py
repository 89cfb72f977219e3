"""Request parsing and validation: v2 (tensor and columnar forms) and v1, every
malformed input answered with a 4xx RequestError naming the problem."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeml.serving.decode import Decoder, InferRequest
from kubeml.serving.errors import RequestError
from kubeml.serving.signature import CompiledSignature

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def numeric_sig() -> CompiledSignature:
    return CompiledSignature.from_json(
        {
            "task": "classification",
            "inputs": [{"name": f, "dtype": "number"} for f in FEATURES],
            "outputs": [{"name": "predict", "dtype": "integer"}],
            "classes": ["0", "1", "2"],
        }
    )


def mixed_sig() -> CompiledSignature:
    return CompiledSignature.from_json(
        {
            "task": "classification",
            "inputs": [
                {"name": "age", "dtype": "integer"},
                {"name": "color", "dtype": "category"},
                {"name": "member", "dtype": "boolean"},
            ],
            "outputs": [{"name": "predict", "dtype": "string"}],
        }
    )


def decoder(sig: CompiledSignature | None = None, **kw: Any) -> Decoder:
    opts = {"max_rows": 100, "has_proba": True, "allow_missing": False, **kw}
    return Decoder(sig or numeric_sig(), **opts)


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def tensor(
    rows: list[list[float]], name: str = "input-0", datatype: str = "FP64"
) -> dict[str, Any]:
    return {
        "name": name,
        "shape": [len(rows), len(rows[0]) if rows else 4],
        "datatype": datatype,
        "data": [v for r in rows for v in r],
    }


def columns(rows: list[list[float]], shape1: bool = False) -> list[dict[str, Any]]:
    return [
        {
            "name": f,
            "shape": [len(rows), 1] if shape1 else [len(rows)],
            "datatype": "FP64",
            "data": [r[i] for r in rows],
        }
        for i, f in enumerate(FEATURES)
    ]


ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def matrix(req: InferRequest) -> np.ndarray:
    assert isinstance(req.rows, np.ndarray)
    return req.rows


# -- accepted forms ----------------------------------------------------------------------


def test_v2_single_tensor() -> None:
    req = decoder().v2(body({"inputs": [tensor(ROWS)]}))
    assert req.n == 2 and matrix(req).tolist() == ROWS and matrix(req).dtype == np.float64
    assert req.want_predict and not req.want_proba and req.id is None


def test_v2_nested_tensor_data_and_integers() -> None:
    t = {"name": "x", "shape": [2, 4], "datatype": "INT64", "data": [[5, 3, 1, 0], [6, 3, 5, 2]]}
    req = decoder().v2(body({"inputs": [t], "id": "abc"}))
    assert matrix(req).tolist() == [[5, 3, 1, 0], [6, 3, 5, 2]] and req.id == "abc"


@pytest.mark.parametrize("shape1", [False, True])
def test_v2_columnar_in_any_order(shape1: bool) -> None:
    cols = columns(ROWS, shape1)
    req = decoder().v2(body({"inputs": list(reversed(cols))}))
    assert matrix(req).tolist() == ROWS


def test_v2_probabilities_by_parameter_or_output() -> None:
    d = decoder()
    r1 = d.v2(body({"inputs": [tensor(ROWS)], "parameters": {"probabilities": True}}))
    assert r1.want_predict and r1.want_proba
    r2 = d.v2(body({"inputs": [tensor(ROWS)], "outputs": [{"name": "predict_proba"}]}))
    assert not r2.want_predict and r2.want_proba
    r3 = d.v2(body({"inputs": [tensor(ROWS)], "outputs": [{"name": "predict"}]}))
    assert r3.want_predict and not r3.want_proba


def test_v1_lists_and_objects() -> None:
    d = decoder()
    assert matrix(d.v1(body({"instances": ROWS}))).tolist() == ROWS
    objs = [dict(zip(FEATURES, r, strict=True)) for r in ROWS]
    req = d.v1(body({"instances": objs, "parameters": {"probabilities": True}}))
    assert matrix(req).tolist() == ROWS and req.want_proba


def test_nulls_become_nan_when_the_model_allows_missing_values() -> None:
    req = decoder(allow_missing=True).v1(body({"instances": [[5.1, None, 1.4, 0.2]]}))
    assert np.isnan(matrix(req)[0, 1])


def test_mixed_signature_gives_one_array_per_feature() -> None:
    d = decoder(mixed_sig())
    inputs = [
        {"name": "age", "shape": [2], "datatype": "INT64", "data": [31, 45]},
        {"name": "color", "shape": [2], "datatype": "BYTES", "data": ["red", "blue"]},
        {"name": "member", "shape": [2], "datatype": "BOOL", "data": [True, False]},
    ]
    req = d.v2(body({"inputs": inputs}))
    assert isinstance(req.rows, list)
    age, color, member = req.rows
    assert age.tolist() == [31.0, 45.0] and color.tolist() == ["red", "blue"]
    assert member.tolist() == [True, False]
    req1 = d.v1(body({"instances": [{"age": 3, "color": "red", "member": True}]}))
    assert isinstance(req1.rows, list) and req1.rows[1].tolist() == ["red"]
    req2 = d.v1(body({"instances": [[3, "red", True]]}))
    assert isinstance(req2.rows, list) and req2.rows[2].tolist() == [True]


# -- rejected: every case names its problem -------------------------------------------------

BAD_V2: list[tuple[Any, int, str]] = [
    ({"inputs": []}, 400, "inputs"),
    ({"inputs": "x"}, 400, "inputs"),
    ({}, 400, "inputs"),
    ({"inputs": [1]}, 400, "object"),
    ({"inputs": [tensor(ROWS)], "id": 5}, 400, "id"),
    ({"inputs": [{**tensor(ROWS), "shape": [2, 3]}]}, 400, "shape"),
    ({"inputs": [{**tensor(ROWS), "shape": [3, 4]}]}, 400, "needs 12 values"),
    ({"inputs": [{**tensor(ROWS), "shape": "2,4"}]}, 400, "shape"),
    ({"inputs": [{**tensor(ROWS), "shape": [2, -4]}]}, 400, "shape"),
    ({"inputs": [{**tensor(ROWS), "datatype": "BYTES"}]}, 400, "datatype"),
    ({"inputs": [{**tensor(ROWS), "datatype": 3}]}, 400, "datatype"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64"}]}, 400, "no data"),
    ({"inputs": [{**tensor(ROWS), "data": ["a", 1, 2, 3, 4, 5, 6, 7]}]}, 400, "non-numeric"),
    ({"inputs": [{**tensor(ROWS), "data": [None] * 8}]}, 400, "missing"),
    ({"inputs": [{**tensor(ROWS), "data": [True] * 8}]}, 400, "booleans"),
    ({"inputs": [{**tensor(ROWS), "data": {"a": 1}}]}, 400, "JSON array"),
    ({"inputs": [{**tensor(ROWS), "data": [[1, 2], [3]]}]}, 400, "regular array"),
    ({"inputs": [{**tensor(ROWS), "datatype": "INT64"}]}, 400, "non-integer"),
    ({"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP64", "data": []}]}, 400, "empty"),
    (
        {"inputs": [{"name": "x", "shape": [101, 4], "datatype": "FP64", "data": [1.0] * 404}]},
        413,
        "limit",
    ),
    ({"inputs": [tensor(ROWS)], "parameters": {"probabilities": "yes"}}, 400, "probabilities"),
    ({"inputs": [tensor(ROWS)], "parameters": []}, 400, "parameters"),
    ({"inputs": [tensor(ROWS)], "outputs": [{"name": "nope"}]}, 400, "unknown output"),
    ({"inputs": [tensor(ROWS)], "outputs": "predict"}, 400, "outputs"),
    ({"inputs": [tensor(ROWS)], "outputs": [{}]}, 400, "name"),
    ({"inputs": columns(ROWS)[:3]}, 400, "missing inputs: 'petal_width'"),
    (
        {"inputs": [*columns(ROWS), {**columns(ROWS)[0], "name": "bogus"}]},
        400,
        "unknown inputs: 'bogus'",
    ),
    ({"inputs": [*columns(ROWS), columns(ROWS)[0]]}, 400, "more than once"),
    ({"inputs": [{**c, "shape": [2, 2]} for c in columns(ROWS)]}, 400, "must be [n] or [n, 1]"),
    ({"inputs": [*columns(ROWS)[:3], {**columns(ROWS)[3], "shape": [3]}]}, 400, "rows"),
    ({"inputs": [*columns(ROWS)[:3], {**columns(ROWS)[3], "datatype": "BOOL"}]}, 400, "datatype"),
    ({"inputs": [*columns(ROWS)[:3], {**columns(ROWS)[3], "data": [1.0]}]}, 400, "data has 1"),
    ({"inputs": [{**tensor(ROWS), "name": 7}]}, 400, "name"),
]


@pytest.mark.parametrize(("doc", "status", "words"), BAD_V2)
def test_bad_v2_requests_name_the_problem(doc: Any, status: int, words: str) -> None:
    with pytest.raises(RequestError) as err:
        decoder().v2(body(doc))
    assert err.value.status == status
    assert words in err.value.message


BAD_V1: list[tuple[Any, int, str]] = [
    ({"instances": []}, 400, "empty"),
    ({"instances": {}}, 400, "instances"),
    ({"rows": [[1, 2, 3, 4]]}, 400, "instances"),
    ({"instances": [[1, 2, 3]]}, 400, "list of 4 values"),
    ({"instances": [1, 2, 3, 4]}, 400, "each instance"),
    ({"instances": [[1, 2, 3, "4"]]}, 400, "non-numeric"),
    ({"instances": [[1, 2, 3, [4]]]}, 400, "instances"),
    ({"instances": [[1, 2, 3, None]]}, 400, "missing"),
    ({"instances": [{"sepal_length": 1}]}, 400, "missing inputs"),
    ({"instances": [dict.fromkeys([*FEATURES, "extra"], 1.0)]}, 400, "unknown inputs: 'extra'"),
    ({"instances": [dict.fromkeys(FEATURES, 1.0), [1, 2, 3, 4]]}, 400, "instance 1"),
    ({"instances": [[1.0] * 4] * 101}, 413, "limit"),
    ({"instances": [[1.0] * 4], "parameters": {"probabilities": 1}}, 400, "probabilities"),
]


@pytest.mark.parametrize(("doc", "status", "words"), BAD_V1)
def test_bad_v1_requests_name_the_problem(doc: Any, status: int, words: str) -> None:
    with pytest.raises(RequestError) as err:
        decoder().v1(body(doc))
    assert err.value.status == status
    assert words in err.value.message


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"[1, 2]", b"null", b'"x"', b"\xff\xfe", b"NaN", b'{"a": Infinity}']
)
def test_malformed_json(raw: bytes) -> None:
    for parse in (decoder().v1, decoder().v2):
        with pytest.raises(RequestError) as err:
            parse(raw)
        assert err.value.status == 400
        assert "JSON" in err.value.message


def test_numbers_beyond_a_double_are_rejected_big_integers_kept() -> None:
    with pytest.raises(RequestError):
        decoder().v1(b'{"instances": [[1e999, 1, 2, 3]]}')
    req = decoder().v1(b'{"instances": [[100000000000000000000000000000, 1, 2, 3]]}')
    assert matrix(req)[0, 0] == 1e29


def test_probabilities_of_a_model_without_them() -> None:
    with pytest.raises(RequestError, match="does not predict probabilities"):
        decoder(has_proba=False).v2(
            body({"inputs": [tensor(ROWS)], "parameters": {"probabilities": True}})
        )
    with pytest.raises(RequestError, match="unknown output"):
        decoder(has_proba=False).v2(
            body({"inputs": [tensor(ROWS)], "outputs": [{"name": "predict_proba"}]})
        )


MIXED_BAD: list[tuple[Any, str]] = [
    (
        {"inputs": [{"name": "t", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
        "one input per feature",
    ),
    (
        {
            "inputs": [
                {"name": "age", "shape": [1], "datatype": "INT64", "data": [31]},
                {"name": "color", "shape": [1], "datatype": "BYTES", "data": [3]},
                {"name": "member", "shape": [1], "datatype": "BOOL", "data": [True]},
            ]
        },
        "strings",
    ),
    (
        {
            "inputs": [
                {"name": "age", "shape": [1], "datatype": "INT64", "data": [31]},
                {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]},
                {"name": "member", "shape": [1], "datatype": "BOOL", "data": [1]},
            ]
        },
        "true/false",
    ),
    (
        {
            "inputs": [
                {"name": "age", "shape": [1], "datatype": "INT64", "data": [31]},
                {"name": "color", "shape": [1], "datatype": "FP64", "data": [1.0]},
                {"name": "member", "shape": [1], "datatype": "BOOL", "data": [True]},
            ]
        },
        "datatype FP64 does not fit a category feature",
    ),
]


@pytest.mark.parametrize(("doc", "words"), MIXED_BAD)
def test_mixed_signature_rejections(doc: Any, words: str) -> None:
    with pytest.raises(RequestError) as err:
        decoder(mixed_sig()).v2(body(doc))
    assert err.value.status == 400 and words in err.value.message


# -- property: whatever the bytes, a request or a 4xx RequestError ---------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
    | st.sampled_from([*FEATURES, "input-0", "FP64", "INT64", "BYTES", "BOOL", "predict_proba"]),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(
        st.sampled_from(
            ["inputs", "name", "shape", "datatype", "data", "outputs", "parameters", "id",
             "instances", "probabilities", *FEATURES]
        ) | st.text(max_size=3),
        children,
        max_size=6,
    ),
    max_leaves=40,
)  # fmt: skip


def _tensorish() -> st.SearchStrategy[dict[str, Any]]:
    """Requests close to valid ones, mutated: where bugs in validation hide."""
    name = st.sampled_from([*FEATURES, "input-0", "x"]) | json_values
    shape = st.lists(st.integers(-2, 6), min_size=0, max_size=3) | json_values
    datatype = st.sampled_from(["FP64", "FP32", "INT64", "BOOL", "BYTES", "X"]) | json_values
    data = (
        st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-5, 5), max_size=24)
        | json_values
    )
    t = st.fixed_dictionaries({"name": name, "shape": shape, "datatype": datatype, "data": data})
    return st.fixed_dictionaries(
        {"inputs": st.lists(t, min_size=0, max_size=5)},
        optional={"outputs": json_values, "parameters": json_values, "id": json_values},
    )


def _check(parse: Any, raw: bytes) -> None:
    try:
        req = parse(raw)
    except RequestError as err:
        failure = err
    else:
        failure = None
    if failure is not None:
        assert 400 <= failure.status < 500
        assert failure.message
        return
    assert isinstance(req, InferRequest) and req.n >= 1
    if isinstance(req.rows, np.ndarray):
        assert req.rows.shape == (req.n, 4) and req.rows.dtype == np.float64
    else:
        assert all(len(c) == req.n for c in req.rows)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_gives_a_request_or_a_4xx(doc: Any) -> None:
    raw = json.dumps(doc).encode()
    for sig in (numeric_sig(), mixed_sig()):
        d = decoder(sig)
        _check(d.v2, raw)
        _check(d.v1, raw)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(_tensorish())
def test_mutated_v2_requests_give_a_request_or_a_4xx(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    for sig in (numeric_sig(), mixed_sig()):
        for allow_missing in (False, True):
            _check(decoder(sig, allow_missing=allow_missing).v2, raw)


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_any_bytes_give_a_request_or_a_4xx(raw: bytes) -> None:
    _check(decoder().v2, raw)
    _check(decoder().v1, raw)


@settings(max_examples=200)
@given(
    st.lists(
        st.lists(st.floats(-1e6, 1e6) | st.integers(-1000, 1000), min_size=4, max_size=4),
        min_size=1,
        max_size=20,
    )
)
def test_valid_rows_round_trip_through_every_form(rows: list[list[float]]) -> None:
    want = np.asarray(rows, dtype=np.float64)
    d = decoder()
    as_tensor = d.v2(body({"inputs": [tensor(rows)]}))
    as_columns = d.v2(body({"inputs": columns(rows)}))
    as_v1 = d.v1(body({"instances": rows}))
    as_objects = d.v1(body({"instances": [dict(zip(FEATURES, r, strict=True)) for r in rows]}))
    for req in (as_tensor, as_columns, as_v1, as_objects):
        np.testing.assert_array_equal(matrix(req), want)
