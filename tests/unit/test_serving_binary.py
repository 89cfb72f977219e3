"""The binary tensor data extension, media types and compressed bodies, through the
server's request path (ModelServer.handle with the request's headers)."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from kubeml.serving import binary
from kubeml.serving.app import NO_META, ModelServer, RequestMeta, Response
from kubeml.serving.errors import RequestError
from kubeml.serving.loader import Loaded
from kubeml.serving.predictor import Predictor
from tests.unit.test_serving_app import SIG, config

INFER = "/v2/models/iris/infer"
X, Y = load_iris(return_X_y=True)
MODEL = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, Y)


class Server:
    def __init__(self, **kw: Any) -> None:
        from kubeml.serving.worker import PredictWorker

        cfg = config(SIG, **kw)
        self.server = ModelServer(cfg)
        self.loop = asyncio.new_event_loop()
        self.pool = PredictWorker()
        self.server.attach(self.loop, self.pool)
        self.server.set_loaded(Loaded(Predictor(MODEL, cfg.signature), None))

    def post(self, body: bytes, meta: RequestMeta = NO_META, path: str = INFER) -> Response:
        async def go() -> Response:
            fut: asyncio.Future[Response] = self.loop.create_future()
            self.server.handle("POST", path, body, fut.set_result, meta)
            return await asyncio.wait_for(fut, 30)

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.pool.close()
        self.loop.close()


@pytest.fixture(scope="module")
def srv() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def extension(doc: dict[str, Any], *tensors: bytes) -> tuple[bytes, RequestMeta]:
    head = json.dumps(doc).encode()
    return head + b"".join(tensors), RequestMeta(None, str(len(head)).encode())


def split(resp: Response) -> tuple[dict[str, Any], bytes]:
    headers = dict(resp.headers)
    n = int(headers["inference-header-content-length"])
    return orjson.loads(resp.body[:n]), resp.body[n:]


@pytest.mark.parametrize("datatype", ["FP64", "FP32", "FP16", "INT64", "INT32", "UINT8"])
def test_binary_inputs_of_every_numeric_datatype(srv: Server, datatype: str) -> None:
    rows = X[:20]
    data = np.round(rows) if datatype.startswith(("INT", "UINT")) else rows
    raw = data.astype(binary.DTYPES[datatype]).tobytes()
    inp = {"name": "x", "shape": [20, 4], "datatype": datatype}
    body, meta = extension({"inputs": [{**inp, "parameters": {"binary_data_size": len(raw)}}]}, raw)
    resp = srv.post(body, meta)
    assert resp.status == 200, resp.body
    out = orjson.loads(resp.body)["outputs"][0]  # JSON outputs unless asked
    want = MODEL.predict(data.astype(binary.DTYPES[datatype]).astype(np.float64))
    assert out["data"] == want.tolist()


def test_binary_outputs_on_request_per_output_and_for_all(srv: Server) -> None:
    raw = X[:7].tobytes()
    inp = {"name": "x", "shape": [7, 4], "datatype": "FP64"}
    inp["parameters"] = {"binary_data_size": len(raw)}
    body, meta = extension({"inputs": [inp], "parameters": {"binary_data_output": True}}, raw)
    resp = srv.post(body, meta)
    assert resp.status == 200 and resp.content_type == "application/octet-stream"
    head, tail = split(resp)
    (out,) = head["outputs"]
    assert out["parameters"]["binary_data_size"] == len(tail) == 7 * 8 and "data" not in out
    np.testing.assert_array_equal(np.frombuffer(tail, "<i8"), MODEL.predict(X[:7]))

    doc = {
        "inputs": [
            {"name": "x", "shape": [7, 4], "datatype": "FP64", "data": X[:7].ravel().tolist()}
        ],
        "outputs": [
            {"name": "predict"},
            {"name": "predict_proba", "parameters": {"binary_data": True}},
        ],
    }
    resp = srv.post(json.dumps(doc).encode())
    head, tail = split(resp)
    pred, proba = head["outputs"]
    assert pred["data"] == MODEL.predict(X[:7]).tolist()
    assert proba["parameters"]["binary_data_size"] == 7 * 3 * 8
    assert proba["parameters"]["classes"] == ["0", "1", "2"]
    np.testing.assert_allclose(np.frombuffer(tail, "<f8").reshape(7, 3), MODEL.predict_proba(X[:7]))


def test_one_binary_input_per_feature_mixed_with_json(srv: Server) -> None:
    cols = [X[:5, i] for i in range(4)]
    tensors = []
    raws = []
    for i, name in enumerate(["sepal_length", "sepal_width", "petal_length", "petal_width"]):
        t: dict[str, Any] = {"name": name, "shape": [5], "datatype": "FP32"}
        if i % 2:
            t["data"] = cols[i].tolist()
        else:
            raw = cols[i].astype("<f4").tobytes()
            t["parameters"] = {"binary_data_size": len(raw)}
            raws.append(raw)
        tensors.append(t)
    body, meta = extension({"inputs": tensors}, *raws)
    resp = srv.post(body, meta)
    assert resp.status == 200, resp.body
    assert orjson.loads(resp.body)["outputs"][0]["data"] == MODEL.predict(X[:5]).tolist()


def bad(srv: Server, doc: dict[str, Any], *tensors: bytes, length: int | None = None) -> str:
    body, meta = extension(doc, *tensors)
    if length is not None:
        meta = meta._replace(header_length=str(length).encode())
    resp = srv.post(body, meta)
    assert 400 <= resp.status < 500, resp.body
    message: str = orjson.loads(resp.body)["error"]
    return message


def tensor(size: int, datatype: str = "FP64", shape: list[int] | None = None) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "x",
                "shape": shape or [1, 4],
                "datatype": datatype,
                "parameters": {"binary_data_size": size},
            }
        ]
    }


def test_bad_binary_requests_are_4xx_naming_the_problem(srv: Server) -> None:
    four = np.zeros(4).tobytes()
    assert "runs past" in bad(srv, tensor(64), four)
    assert "no input claims" in bad(srv, tensor(32), four + b"xx")
    assert "whole number" in bad(srv, tensor(30), four[:30])
    assert "needs 8 values" in bad(srv, tensor(32, shape=[2, 4]), four)
    assert "unknown datatype" in bad(srv, tensor(32, "FLOAT"), four)
    assert "non-finite" in bad(srv, tensor(32), np.array([1, 2, np.inf, 3.0]).tobytes())
    assert "not numeric" in bad(srv, tensor(4, "BOOL"), b"\x00\x01\x00\x01")
    assert "does not fit" in bad(srv, tensor(32), four, length=10**6)
    assert "binary_data_size must be" in bad(srv, tensor(-1), four)
    doc = tensor(32)
    doc["inputs"][0]["data"] = [1, 2, 3, 4]
    assert "both data" in bad(srv, doc, four)
    assert "malformed JSON" in bad(srv, tensor(32), four, length=5)
    body, meta = extension(tensor(32), four)
    resp = srv.post(body, meta._replace(header_length=b"-3"))
    assert resp.status == 400 and b"Inference-Header-Content-Length" in resp.body


def test_bytes_and_bool_raw_layouts() -> None:
    words = ["setosa", "", "virginica \u00e9"]
    raw = binary.encode("BYTES", np.array(words, dtype=object))
    assert binary.decode("BYTES", raw, "x").tolist() == words
    with pytest.raises(RequestError, match="runs past"):
        binary.decode("BYTES", raw[:-1], "x")
    with pytest.raises(RequestError, match="length"):
        binary.decode("BYTES", raw + b"\x01", "x")
    with pytest.raises(RequestError, match="UTF-8"):
        binary.decode("BYTES", b"\x01\x00\x00\x00\xff", "x")
    assert binary.decode("BOOL", b"\x01\x00", "x").tolist() == [True, False]
    with pytest.raises(RequestError, match="0 or 1"):
        binary.decode("BOOL", b"\x02", "x")


@pytest.mark.parametrize(
    "content_type", [b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data"]
)
def test_media_types_that_are_not_json_are_415(srv: Server, content_type: bytes) -> None:
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
    ).encode()
    resp = srv.post(body, RequestMeta(content_type))
    assert resp.status == 415 and content_type.decode() in orjson.loads(resp.body)["error"]
    for ok in (None, b"application/json; charset=utf-8", b"application/octet-stream"):
        assert srv.post(body, RequestMeta(ok)).status == 200, ok
    v1 = json.dumps({"instances": [[1, 2, 3, 4]]}).encode()
    assert srv.post(v1, RequestMeta(b"text/plain"), "/v1/models/iris:predict").status == 415


def test_compressed_bodies_are_inflated_within_the_size_limit() -> None:
    s = Server(max_request_bytes=4096)
    try:
        body = json.dumps(
            {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [1.0] * 8}]}
        ).encode()
        assert s.post(gzip.compress(body), RequestMeta(None, None, b"gzip")).status == 200
        assert s.post(zlib.compress(body), RequestMeta(None, None, b"deflate")).status == 200
        bomb = gzip.compress(b" " * 10_000_000)  # ~10 kB that inflates to 10 MB
        resp = s.post(bomb, RequestMeta(None, None, b"gzip"))
        assert resp.status == 413 and b"decompressed" in resp.body
        assert s.post(b"not gzip", RequestMeta(None, None, b"gzip")).status == 400
        assert s.post(gzip.compress(body)[:-8], RequestMeta(None, None, b"gzip")).status == 400
        assert s.post(body, RequestMeta(None, None, b"br")).status == 415
    finally:
        s.close()
