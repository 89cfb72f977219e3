"""The Open Inference Protocol's gRPC form (``inference.GRPCInferenceService``).

The messages and the service come generated from a maintained package
(``tritonclient.grpc.service_pb2`` / ``service_pb2_grpc``, the protocol's
``grpc_service.proto``), never built by hand. A request is turned into the same
JSON-shaped document the HTTP path decodes, so validation, batching, metrics
(``protocol="grpc"``, with the HTTP-equivalent code) and drift are shared: only
the framing differs. Outputs go back as ``raw_output_contents``, as Triton does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from .. import __version__
from . import binary
from .app import ModelServer, Prediction, check_request_id
from .decode import InferRequest
from .errors import RequestError, bad_request

# HTTP-equivalent statuses of our RequestErrors, as gRPC status codes.
STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}

# Which InferTensorContents field holds each datatype, and as what numpy type.
_CONTENTS: dict[str, tuple[str, Any]] = {
    "BOOL": ("bool_contents", np.bool_),
    "INT8": ("int_contents", np.int32),
    "INT16": ("int_contents", np.int32),
    "INT32": ("int_contents", np.int32),
    "INT64": ("int64_contents", np.int64),
    "UINT8": ("uint_contents", np.uint32),
    "UINT16": ("uint_contents", np.uint32),
    "UINT32": ("uint_contents", np.uint32),
    "UINT64": ("uint64_contents", np.uint64),
    "FP32": ("fp32_contents", np.float32),
    "FP64": ("fp64_contents", np.float64),
}


def _parameter(p: Any) -> Any:
    which = p.WhichOneof("parameter_choice")
    return None if which is None else getattr(p, which)


def _contents(t: Any, what: str) -> np.ndarray:
    if t.datatype == "BYTES":
        try:
            items = [b.decode("utf-8") for b in t.contents.bytes_contents]
        except UnicodeDecodeError as err:
            raise bad_request(f"{what}: a BYTES element is not UTF-8 text") from err
        arr = np.empty(len(items), dtype=object)
        arr[:] = items
        return arr
    field = _CONTENTS.get(t.datatype)
    if field is None:
        raise bad_request(f"{what}: unknown datatype {t.datatype!r}")
    return np.asarray(getattr(t.contents, field[0]), dtype=field[1])


def request_doc(request: Any) -> dict[str, Any]:
    """A ModelInferRequest as the document ``Decoder.v2_doc`` validates."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise bad_request(
            f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs"
        )
    inputs = []
    for i, t in enumerate(request.inputs):
        what = f"input {t.name!r}"
        data = binary.decode(t.datatype, raw[i], what) if raw else _contents(t, what)
        inputs.append(
            {"name": t.name, "datatype": t.datatype, "shape": list(t.shape), "data": data}
        )
    doc: dict[str, Any] = {"inputs": inputs}
    if request.id:
        doc["id"] = request.id
    params = {k: _parameter(v) for k, v in request.parameters.items()}
    # Outputs always travel raw here; the HTTP extension's switch means nothing.
    params.pop("binary_data_output", None)
    if params:
        doc["parameters"] = params
    if request.outputs:
        doc["outputs"] = [{"name": o.name} for o in request.outputs]
    return doc


# Marks a forwarded call (metadata): a server never forwards one again.
FORWARDED_KEY = "kubeml-forwarded"
# Status codes that are the canary's answer to the request (it ran and refused it);
# any other failure means it never answered (down, refused, timed out).
_ANSWERED_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


class CanaryChannel:
    """The canary's gRPC port, for the share of gRPC calls a stable server forwards
    (the same :class:`Split` as HTTP, so the share is exact over both protocols).
    Bounded like the HTTP forwarder: calls at once, a deadline, an answer size."""

    def __init__(self, target: str, *, max_calls: int, timeout_s: float, max_bytes: int) -> None:
        self.target = target
        self.max_calls = max_calls
        self.timeout_s = timeout_s
        self.busy = 0
        self._channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
            ],
        )
        self.stub = pb_grpc.GRPCInferenceServiceStub(self._channel)

    def saturated(self) -> bool:
        return self.busy >= self.max_calls

    async def close(self) -> None:
        await self._channel.close()


def canary_target(server: ModelServer) -> str | None:
    """host:port of the canary's gRPC port: the canary Service's host on the gRPC
    port every server of the Deployment listens on; None without a canary."""
    cfg = server.cfg
    if not cfg.canary_url or cfg.canary_percent <= 0 or not cfg.grpc_port:
        return None
    host = urlsplit(cfg.canary_url).hostname
    return f"{host}:{cfg.grpc_port}" if host else None


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, server: ModelServer) -> None:
        self.server = server
        cfg = server.cfg
        target = canary_target(server)
        self.canary = (
            None
            if target is None
            else CanaryChannel(
                target,
                max_calls=cfg.forward_connections,
                timeout_s=cfg.forward_timeout_s,
                max_bytes=max(64 << 20, 8 * cfg.max_request_bytes),
            )
        )

    # -- health and metadata -------------------------------------------------------

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.server.ready)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        await self._known(request.name, request.version, context)
        return pb.ModelReadyResponse(ready=self.server.ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(name="kubeml", version=__version__, extensions=[])

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        await self._known(request.name, request.version, context)
        meta = self.server.model_metadata()

        def tensors(items: list[dict[str, Any]]) -> list[Any]:
            return [
                pb.ModelMetadataResponse.TensorMetadata(
                    name=t["name"], datatype=t["datatype"], shape=t["shape"]
                )
                for t in items
            ]

        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=tensors(meta["inputs"]),
            outputs=tensors(meta["outputs"]),
        )

    async def _known(self, name: str, version: str, context: Any) -> None:
        try:
            self._model(name, version)
        except RequestError as err:
            await context.abort(STATUS[err.status], err.message)

    def _model(self, name: str, version: str) -> None:
        cfg = self.server.cfg
        if name != cfg.model:
            raise RequestError(404, f"model {name!r} not found; this server serves {cfg.model!r}")
        if version and version != cfg.version_str:
            raise RequestError(
                404,
                f"version {version!r} of model {name!r} not found; "
                f"this server serves version {cfg.version_str}",
            )

    # -- inference -------------------------------------------------------------------

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        start = time.perf_counter()
        server = self.server
        try:
            self._model(request.model_name, request.model_version)
            req = self._decode(request)
            # Validated first, as over HTTP: a request this version rejects is the
            # client's error; one the canary cannot answer is answered here.
            forwarded = await self._forward(request, req, context, start)
            if forwarded is not None:
                return forwarded
            outcome = await self._predict(req)
            response = self._response(req, outcome)
        except RequestError as err:
            # Counted before abort: abort sends the status at once, and a client that
            # reads /metrics next must find its request there.
            server.metrics.request("grpc", err.status, time.perf_counter() - start)
            await context.abort(STATUS.get(err.status, grpc.StatusCode.UNKNOWN), err.message)
        except Exception:
            server.metrics.request("grpc", 500, time.perf_counter() - start)
            raise
        server.metrics.request("grpc", 200, time.perf_counter() - start)
        return response

    def _decode(self, request: Any) -> InferRequest:
        server = self.server
        decoder = server.decoder
        if decoder is None or server.batcher is None:
            raise RequestError(503, f"model not ready: {server.reason}")
        req = decoder.v2_doc(request_doc(request))
        if req.id is not None:
            check_request_id(req.id)
        return req

    async def _forward(
        self, request: Any, req: InferRequest, context: Any, start: float
    ) -> Any | None:
        """The canary's answer when this call is in its share and it gave one; None:
        answer here. Only version-less calls move (a client naming this version gets
        it), and never a call already forwarded."""
        canary, server = self.canary, self.server
        if canary is None or request.model_version:
            return None
        if any(k == FORWARDED_KEY for k, _ in context.invocation_metadata() or ()):
            return None
        if not server.split.take():
            return None
        label = server.cfg.canary_version or "canary"
        if canary.saturated():
            server.metrics.forwarded(label, "saturated", 0.0)
            return None
        canary.busy += 1
        server.inflight += 1
        try:
            answer = await canary.stub.ModelInfer(
                request, timeout=canary.timeout_s, metadata=((FORWARDED_KEY, "1"),)
            )
        except grpc.aio.AioRpcError as err:
            outcome = "error" if err.code() in _ANSWERED_CODES else "unreachable"
            server.metrics.forwarded(label, outcome, time.perf_counter() - start)
            server.note_fallback(f"gRPC {err.code().name}: {err.details()}")
            return None
        finally:
            canary.busy -= 1
            server.inflight -= 1
        server.metrics.forwarded(label, "answered", time.perf_counter() - start)
        return answer

    async def _predict(self, req: InferRequest) -> Prediction:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.server.submit(req, _resolver(fut), "grpc")
        outcome = await fut
        if isinstance(outcome, BaseException):
            msg = f"prediction failed: {type(outcome).__name__}: {outcome}"
            raise RequestError(500, msg[:2000])
        prediction: Prediction = outcome
        return prediction

    def _response(self, req: InferRequest, outcome: Prediction) -> Any:
        encoder = self.server.encoder
        assert encoder is not None
        outputs, raw = [], []
        n = len(outcome.pred)
        if req.want_predict:
            outputs.append(
                pb.ModelInferResponse.InferOutputTensor(
                    name="predict", datatype=encoder.datatype, shape=[n]
                )
            )
            raw.append(binary.encode(encoder.datatype, outcome.pred))
        if req.want_proba and outcome.proba is not None:
            proba = outcome.proba
            outputs.append(
                pb.ModelInferResponse.InferOutputTensor(
                    name="predict_proba", datatype="FP64", shape=[n, proba.shape[1]]
                )
            )
            raw.append(binary.encode("FP64", proba.ravel()))
        return pb.ModelInferResponse(
            model_name=encoder.model,
            model_version=encoder.version,
            id=req.id or "",
            outputs=outputs,
            raw_output_contents=raw,
        )


def _resolver(fut: asyncio.Future[Any]) -> Callable[[Any], None]:
    def done(outcome: Any) -> None:
        if not fut.done():  # the client may have cancelled meanwhile
            fut.set_result(outcome)

    return done


async def start(server: ModelServer, host: str, port: int) -> grpc.aio.Server:
    cfg = server.cfg
    srv = grpc.aio.server(
        options=[
            # The same body bound as HTTP; gRPC answers RESOURCE_EXHAUSTED above it.
            ("grpc.max_receive_message_length", cfg.max_request_bytes),
            ("grpc.max_connection_idle_ms", int(cfg.keepalive_timeout_s * 1000)),
            ("grpc.max_concurrent_streams", 128),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=cfg.max_connections,
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(server), srv)
    bound = srv.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    await srv.start()
    return srv
