"""The model server's behaviour, independent of the HTTP stack.

``ModelServer.handle(method, path, body, respond, meta)`` answers every HTTP request
through ``respond(Response)``: synchronously for health, metadata and errors, later
(from the batcher's callback) for predictions. Transports (``http.py``, ``asgi.py``)
only move bytes; gRPC (``grpc_api.py``) decodes its messages into the same request
and shares ``submit``. Every request-dependent failure is a 4xx with ``{"error": ...}``; the
only 500 is an exception inside predict, which is logged and answered while the
server goes on serving.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import zlib
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote

import numpy as np

from .. import __version__
from .batcher import Batcher, Job
from .capture import Batch, Capture
from .config import ServerConfig
from .decode import PREDICT, PREDICT_PROBA, Decoder, InferRequest, concat
from .encode import Encoder, dumps, error_body
from .errors import RequestError
from .feedback import Feedback
from .feedback import parse as parse_feedback
from .forward import Answer, Forwarder, ForwardError, Split, forward_headers
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .metrics import ServerMetrics
from .shadow import Shadow
from .signature import V2_DATATYPE
from .writer import WriterProcess

if TYPE_CHECKING:  # the loader pulls in scikit-learn: not before the port is open
    from .loader import Loaded
    from .worker import PredictWorker

log = logging.getLogger("kubeml.serve")
JSON = "application/json"


OCTET = "application/octet-stream"
FALLBACK_LOG_INTERVAL_S = 10.0
# Request media types an inference body may have. None: many clients (tritonclient
# among them) send no Content-Type at all.
ACCEPTED_MEDIA = frozenset({b"", b"application/json", b"application/octet-stream"})


class Response(NamedTuple):
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


class RequestMeta(NamedTuple):
    """The request headers the server acts on (raw values, None when absent)."""

    content_type: bytes | None = None
    header_length: bytes | None = None  # Inference-Header-Content-Length
    content_encoding: bytes | None = None
    request_id: bytes | None = None  # X-Request-Id


NO_META = RequestMeta()
Respond = Callable[[Response], None]
Route = Callable[[bytes, Respond, RequestMeta], None]


def error(status: int, message: str) -> Response:
    return Response(status, error_body(message))


class Prediction(NamedTuple):
    pred: np.ndarray
    proba: np.ndarray | None


class ModelServer:
    def __init__(self, cfg: ServerConfig, metrics: ServerMetrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics or ServerMetrics(cfg.model, cfg.version_str)
        self.metrics.track_inflight(lambda: float(self.inflight))
        self.inflight = 0
        self.arriving = 0  # requests whose body is still arriving (set by the transport)
        # keep-alive clients answered moments ago, not yet back (set by the transport)
        self.returning: Callable[[], int] = lambda: 0
        self.ready = False
        self.shutting_down = False
        self.reason = "Loading"
        self.message = f"loading {cfg.artifact_uri}"
        self.loaded: Loaded | None = None
        self.decoder: Decoder | None = None
        self.encoder: Encoder | None = None
        self.batcher: Batcher | None = None
        # Set by the runner when spec.capture is on, before the model loads.
        self.capture: Capture | None = None
        self.feedback: Feedback | None = None
        # Their writer child's pipe, fed as predict calls start (``run_batch``).
        self.writer: WriterProcess | None = None
        # Request ids need only be unique across servers: a random prefix and a
        # counter cost far less than a uuid4 per request.
        self._id_prefix = os.urandom(6).hex()
        self._id_counter = itertools.count(1)
        self.forwarder: Forwarder | None = None
        self.shadow: Shadow | None = None
        self._fallback_logged = -FALLBACK_LOG_INTERVAL_S
        self.split = Split(cfg.canary_percent if cfg.canary_url else 0)
        self._version_header = (("kubeml-model-version", cfg.version_str),)
        self.metrics.state(False, self.reason)
        self._routes = self._route_table()
        # Only version-less inference paths may be forwarded: a client that names
        # this version gets this version.
        m = f"/v2/models/{cfg.model}"
        self._forwardable = {
            f"{m}/infer": f"{m}/infer",
            f"/v1/models/{cfg.model}:predict": f"/v1/models/{cfg.model}:predict",
        }

    # -- lifecycle -------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop, worker: PredictWorker) -> None:
        """Bind to the loop and the predict worker thread (before serving)."""
        self.batcher = Batcher(
            loop,
            self.run_batch,
            worker,
            max_rows=self.cfg.max_batch_size,
            max_requests=self.cfg.max_batch_requests,
            max_delay=self.cfg.max_batch_delay_ms / 1000.0,
            expected=lambda: self.arriving + self.returning(),
        )
        if self.cfg.canary_url and self.cfg.canary_percent > 0:
            self.forwarder = Forwarder(
                self.cfg.canary_url,
                max_connections=self.cfg.forward_connections,
                timeout_s=self.cfg.forward_timeout_s,
                # An answer is at most a few times its request (probabilities per class).
                max_body=max(64 << 20, 8 * self.cfg.max_request_bytes),
            )
        cfg = self.cfg
        if cfg.shadow_url and cfg.shadow_percent > 0:
            label = cfg.shadow_version or "shadow"
            self.shadow = Shadow(
                Forwarder(
                    cfg.shadow_url,
                    max_connections=cfg.forward_connections,
                    timeout_s=cfg.forward_timeout_s,
                    max_body=max(64 << 20, 8 * cfg.max_request_bytes),
                ),
                cfg.shadow_percent,
                label,
                cfg.signature.task,
                cfg.shadow_tolerance,
                self.metrics,
            )
            self.metrics.known_shadow(label)

    def set_loaded(self, loaded: Loaded) -> None:
        """The model is verified and warmed up: start serving (on the loop thread)."""
        p = loaded.predictor
        self.decoder = Decoder(
            self.cfg.signature,
            max_rows=self.cfg.max_request_rows,
            has_proba=p.has_proba,
            allow_missing=p.allow_missing,
        )
        classes = None if p.classes is None else _labels(p.classes)
        self.encoder = Encoder(self.cfg.model, self.cfg.version_str, p.output_datatype, classes)
        self.loaded = loaded
        self.metrics.model_info(self.cfg.artifact_sha256)
        if classes is not None:
            self.metrics.known_classes(classes)
        self.metrics.drift.window = loaded.drift
        self._set_state(True, "Loaded", f"serving {self.cfg.artifact_uri} ({p.mode} predict)")

    def set_unready(self, reason: str, message: str) -> None:
        self._set_state(False, reason, message)

    def set_shutting_down(self) -> None:
        """Unready for good: a model that finishes loading now must not flip it back."""
        self._set_state(False, "ShuttingDown", "the server is shutting down")
        self.shutting_down = True

    def _set_state(self, ready: bool, reason: str, message: str) -> None:
        if self.shutting_down:
            return
        self.ready, self.reason, self.message = ready, reason, message
        self.metrics.state(ready, reason)

    # -- routing ---------------------------------------------------------------------

    def _route_table(self) -> dict[tuple[str, str], Route]:
        name, v = self.cfg.model, self.cfg.version_str
        m = f"/v2/models/{name}"
        mv = f"{m}/versions/{v}"
        return {
            ("GET", "/v2/health/live"): self._live,
            ("GET", "/v2/health/ready"): self._ready,
            ("GET", "/v2"): self._server_metadata,
            ("GET", "/metrics"): self._metrics,
            ("GET", m): self._model_metadata,
            ("GET", mv): self._model_metadata,
            ("GET", f"{m}/ready"): self._model_ready,
            ("GET", f"{mv}/ready"): self._model_ready,
            ("POST", f"{m}/infer"): partial(self._infer, "v2", f"{m}/infer"),
            ("POST", f"{mv}/infer"): self._infer_v2,
            ("POST", f"/v1/models/{name}:predict"): partial(
                self._infer, "v1", f"/v1/models/{name}:predict"
            ),
            ("POST", f"{m}/feedback"): self._feedback,
            ("POST", f"{mv}/feedback"): self._feedback,
            ("GET", f"/v1/models/{name}"): self._v1_status,
        }

    def handle(
        self, method: str, path: str, body: bytes, respond: Respond, meta: RequestMeta = NO_META
    ) -> None:
        route = self._routes.get((method, path))
        if route is None:
            path = path.partition("?")[0]
            route = self._routes.get((method, path))
        if route is None:
            respond(self._no_route(method, path))
            return
        route(body, respond, meta)

    def _no_route(self, method: str, path: str) -> Response:
        """404 naming what was wrong (model, version or path), 405 for a wrong method."""
        path = unquote(path)
        if any(m != method and p == path for m, p in self._routes):
            return error(405, f"method {method} not allowed on {path}")
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] in ("v1", "v2") and parts[1] == "models":
            name = parts[2].split(":", 1)[0]
            if name != self.cfg.model:
                return error(
                    404, f"model {name!r} not found; this server serves {self.cfg.model!r}"
                )
            if len(parts) >= 5 and parts[3] == "versions" and parts[4] != self.cfg.version_str:
                return error(
                    404,
                    f"version {parts[4]!r} of model {name!r} not found; "
                    f"this server serves version {self.cfg.version_str}",
                )
        return error(404, f"no route {method} {path}")

    # -- health and metadata -----------------------------------------------------------

    def _state_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ready": self.ready, "reason": self.reason}
        if not self.ready:
            doc["message"] = self.message
        return doc

    def _live(self, body: bytes, respond: Respond, meta: RequestMeta) -> None:
        respond(Response(200, b'{"live":true}'))

    def _ready(self, body: bytes, respond: Respond, meta: RequestMeta) -> None:
        respond(Response(200 if self.ready else 503, dumps(self._state_doc())))

    def _model_ready(self, body: bytes, respond: Respond, meta: RequestMeta) -> None:
        doc = {"name": self.cfg.model, "version": self.cfg.version_str, **self._state_doc()}
        respond(Response(200 if self.ready else 503, dumps(doc)))

    def _v1_status(self, body: bytes, respond: Respond, meta: RequestMeta) -> None:
        doc = {"name": self.cfg.model, **self._state_doc()}
        respond(Response(200 if self.ready else 503, dumps(doc)))

    def _server_metadata(self, body: bytes, respond: Respond, meta: RequestMeta) -> None:
        doc = {"name": "kubeml", "version": __version__, "extensions": ["binary_tensor_data"]}
        respond(Response(200, dumps(doc)))

    def _model_metadata(self, body: bytes, respond: Respond, meta: RequestMeta) -> None:
        respond(Response(200, dumps(self.model_metadata())))

    def model_metadata(self) -> dict[str, Any]:
        sig = self.cfg.signature
        p = self.loaded.predictor if self.loaded else None
        outputs: list[dict[str, Any]] = []
        for name, dtype in sig.outputs:
            if name == PREDICT:
                dt = p.output_datatype if p else V2_DATATYPE.get(dtype, "BYTES")
                if sig.task == "regression":
                    dt = "FP64"
                outputs.append({"name": PREDICT, "datatype": dt, "shape": [-1]})
            elif name == PREDICT_PROBA and (p is None or p.has_proba):
                width = len(sig.classes) if sig.classes else -1
                outputs.append({"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, width]})
        params: dict[str, Any] = {
            "task": sig.task,
            "modelVersion": self.cfg.modelversion,
            "sha256": self.cfg.artifact_sha256,
            "maxBatchSize": self.cfg.max_batch_size,
            "maxBatchRequests": self.cfg.max_batch_requests,
        }
        if sig.classes is not None:
            params["classes"] = list(sig.classes)
        return {
            "name": self.cfg.model,
            "versions": [self.cfg.version_str],
            "platform": "sklearn",
            "inputs": sig.input_metadata(),
            "outputs": outputs,
            "parameters": params,
        }

    def _metrics(self, body: bytes, respond: Respond, meta: RequestMeta) -> None:
        respond(Response(200, self.metrics.exposition(), METRICS_TYPE))

    # -- inference -----------------------------------------------------------------------

    def _infer_v2(self, body: bytes, respond: Respond, meta: RequestMeta) -> None:
        self._infer("v2", None, body, respond, meta)

    def _infer(
        self,
        protocol: str,
        forward_path: str | None,
        body: bytes,
        respond: Respond,
        meta: RequestMeta,
    ) -> None:
        start = time.perf_counter()
        decoder = self.decoder
        # Loaded is enough: while shutting down the server is unready (endpoints drop
        # it) but still answers requests already on their way.
        if decoder is None or self.batcher is None:
            self._answer(protocol, start, respond, error(503, f"model not ready: {self.reason}"))
            return
        raw = body
        try:
            body = self._content(body, meta)
            if protocol == "v2":
                req = decoder.v2(body, _header_length(meta.header_length))
            else:
                req = decoder.v1(body)
            if req.id is None and meta.request_id is not None:
                req.id = meta.request_id.decode("latin-1")
            if req.id is not None:
                check_request_id(req.id)
        except RequestError as err:
            self._answer(protocol, start, respond, error(err.status, err.message))
            return
        local: Callable[[Any], None] = partial(self._deliver, protocol, req, start, respond)
        fwd = self.forwarder
        # Validated first: a request this version rejects is the client's error and
        # answered here; one it accepts and the canary cannot answer is the canary's.
        if fwd is not None and forward_path is not None and self.split.take():
            if fwd.saturated():
                self.metrics.forwarded(self._canary_label(), "saturated", 0.0)
            else:
                self.inflight += 1
                fwd.forward(
                    forward_path,
                    raw,
                    forward_headers(meta),
                    partial(self._relay, protocol, req, start, respond, local),
                )
                return
        shadow = self.shadow
        if shadow is not None and forward_path is not None:
            # Mirrored only when answered here: agreement needs this server's own
            # prediction, which the client gets first (the mirror never delays it).
            compare = shadow.mirror(forward_path, raw, forward_headers(meta), protocol)
            if compare is not None:
                local = _then(local, compare)
        self.submit(req, local, protocol)

    # -- ground truth ------------------------------------------------------------------

    def _feedback(self, body: bytes, respond: Respond, meta: RequestMeta) -> None:
        fb = self.feedback
        if fb is None:
            respond(
                error(
                    404,
                    "feedback is off for this model: set spec.capture on its Deployment "
                    "(ground truth is stored beside the captured requests)",
                )
            )
            return
        try:
            entries = parse_feedback(
                self._content(body, meta), fb.task, fb.classes, self.cfg.max_request_rows
            )
            scored, unknown = fb.apply(entries, time.time_ns())
        except RequestError as err:
            respond(error(err.status, err.message))
            return
        self.metrics.feedback(scored, len(unknown))
        doc: dict[str, Any] = {"accepted": len(entries), "scored": scored}
        if unknown:
            # Stored all the same: the Dataset join reads S3, not this server's memory.
            doc["unknown"] = unknown[:1000]
            doc["unknownCount"] = len(unknown)
            doc["message"] = (
                "ids not scored live: predicted by another replica, expired from this "
                "server's memory, or already labelled; stored for datasets all the same"
            )
        respond(Response(200, dumps(doc)))

    def _canary_label(self) -> str:
        return self.cfg.canary_version or "canary"

    def _relay(
        self,
        protocol: str,
        req: InferRequest,
        start: float,
        respond: Respond,
        local: Callable[[Any], None],
        answer: Answer | ForwardError,
    ) -> None:
        """The canary's answer to a forwarded request, or the stable model's when the
        canary gave none worth relaying."""
        self.inflight -= 1
        took = time.perf_counter() - start
        if isinstance(answer, Answer) and 200 <= answer.status < 300:
            self.metrics.forwarded(self._canary_label(), "answered", took)
            respond(Response(answer.status, answer.body, answer.content_type, answer.headers))
            return
        self.note_fallback(answer if isinstance(answer, ForwardError) else f"HTTP {answer.status}")
        outcome = "error" if isinstance(answer, Answer) else "unreachable"
        self.metrics.forwarded(self._canary_label(), outcome, took)
        self.submit(req, local, protocol)

    def note_fallback(self, why: object) -> None:
        """Log that the canary gave no answer worth relaying (at most once per interval:
        a dead canary must not flood the log)."""
        now = time.monotonic()
        if now - self._fallback_logged > FALLBACK_LOG_INTERVAL_S:
            self._fallback_logged = now
            log.warning("canary did not answer a forwarded request (%s): answering here", why)

    def _content(self, body: bytes, meta: RequestMeta) -> bytes:
        """The body after the checks its headers call for: an accepted media type,
        and decompressed (within the size limit) if the client compressed it."""
        media = (meta.content_type or b"").split(b";", 1)[0].strip().lower()
        if media not in ACCEPTED_MEDIA and not media.endswith(b"+json"):
            shown = media.decode("latin-1")[:100]
            raise RequestError(
                415,
                f"Content-Type {shown} is not accepted: send application/json (with the "
                "binary tensor data extension, Inference-Header-Content-Length and any of "
                "application/json or application/octet-stream)",
            )
        encoding = (meta.content_encoding or b"identity").strip().lower()
        if encoding == b"identity":
            return body
        if encoding not in (b"gzip", b"deflate"):
            shown = encoding.decode("latin-1")[:50]
            raise RequestError(415, f"Content-Encoding {shown} is not supported (gzip, deflate)")
        return _decompress(body, 31 if encoding == b"gzip" else 15, self.cfg.max_request_bytes)

    def next_id(self) -> str:
        return f"{self._id_prefix}-{next(self._id_counter)}"

    def submit(self, req: InferRequest, done: Callable[[Any], None], protocol: str) -> None:
        """Queue a validated request for the batcher; ``done`` gets a Prediction or the
        exception predict raised, on the loop thread. HTTP and gRPC share this. The
        request gets its id here (a client's is kept), so capture and the response
        agree on it."""
        batcher = self.batcher
        assert batcher is not None
        if req.id is None:
            req.id = self.next_id()
        self.inflight += 1
        capture = self.capture
        # Sampled before predict: the decision is per request, not per outcome.
        tag = protocol if capture is not None and capture.sampled() else None

        def finished(outcome: Any) -> None:
            self.inflight -= 1
            done(outcome)

        batcher.submit(Job(req.rows, req.n, req.want_proba, finished, tag, req.id))

    def _deliver(
        self, protocol: str, req: InferRequest, start: float, respond: Respond, outcome: Any
    ) -> None:
        if isinstance(outcome, BaseException):
            msg = f"prediction failed: {type(outcome).__name__}: {outcome}"
            self._answer(protocol, start, respond, error(500, msg[:2000]))
            return
        encoder = self.encoder
        assert encoder is not None
        rid = (("x-request-id", req.id or ""),)
        if protocol == "v2":
            body, head = encoder.v2(
                req.id, outcome.pred, outcome.proba, req.want_predict, req.want_proba, req.binary
            )
            if head is not None:
                headers = (("inference-header-content-length", str(head)), *rid)
                self._answer(protocol, start, respond, Response(200, body, OCTET, headers))
                return
        else:
            body = encoder.v1(outcome.pred, outcome.proba if req.want_proba else None)
        self._answer(protocol, start, respond, Response(200, body, JSON, rid))

    def _answer(self, protocol: str, start: float, respond: Respond, response: Response) -> None:
        # Counted before the answer leaves: a client reading /metrics next finds it.
        self.metrics.request(protocol, response.status, time.perf_counter() - start)
        respond(response._replace(headers=response.headers + self._version_header))

    # -- the predict worker thread ---------------------------------------------------

    def run_batch(self, jobs: Sequence[Job]) -> list[Any]:
        """Predict all jobs' rows in one call and split the results back, in order."""
        loaded = self.loaded
        assert loaded is not None
        self._feed_writer()
        try:
            rows = concat([j.rows for j in jobs])
            pred, proba = loaded.predictor.predict(rows, any(j.want_proba for j in jobs))
            total = sum(j.n for j in jobs)
            if len(pred) != total or (proba is not None and len(proba) != total):
                raise RuntimeError(f"model returned {len(pred)} predictions for {total} rows")
        except Exception as err:
            if len(jobs) > 1:
                # One bad request must not fail its neighbours: retry each alone.
                return [out for j in jobs for out in self.run_batch([j])]
            log.exception("predict failed on a request of %d rows", jobs[0].n)
            return [err]
        self._observe(loaded, rows, pred)
        self._remember(jobs, pred)
        self._capture(jobs, rows, pred, proba)
        out: list[Any] = []
        start = 0
        for j in jobs:
            end = start + j.n
            out.append(Prediction(pred[start:end], None if proba is None else proba[start:end]))
            start = end
        return out

    def _feed_writer(self) -> None:
        """Earlier calls' captures to the writer child's pipe, when a feed is due: now,
        while this batch's clients wait and the loop is idle."""
        writer = self.writer
        if writer is None:
            return
        try:
            writer.feed_due()
        except Exception:  # capture must never fail a prediction
            log.exception("feeding the capture writer failed")

    def _remember(self, jobs: Sequence[Job], pred: np.ndarray) -> None:
        """The batch's predictions by request id, for the feedback that may follow."""
        feedback = self.feedback
        if feedback is None:
            return
        try:
            feedback.recent.remember([j.id for j in jobs], [j.n for j in jobs], pred)
        except Exception:  # feedback must never fail a prediction
            log.exception("remembering a batch of %d requests for feedback failed", len(jobs))

    def _capture(
        self, jobs: Sequence[Job], rows: Any, pred: np.ndarray, proba: np.ndarray | None
    ) -> None:
        """The batch's sampled requests, as one record each, before any of their answers
        leaves (so SIGTERM's flush holds every acknowledged one). Here, on the worker
        thread, the whole batch costs one encoding, and the loop thread answering the
        previous batch's clients pays nothing."""
        capture = self.capture
        if capture is None:
            return
        picked = [j for j in jobs if j.capture is not None]
        if not picked:
            return
        try:
            if len(picked) < len(jobs):
                mask = np.repeat([j.capture is not None for j in jobs], [j.n for j in jobs])
                rows = rows[mask] if isinstance(rows, np.ndarray) else [c[mask] for c in rows]
                pred = pred[mask]
                proba = None if proba is None else proba[mask]
            capture.offer(
                Batch(
                    ids=[j.id for j in picked],
                    protocols=[j.capture for j in picked if j.capture is not None],
                    ns=[j.n for j in picked],
                    want_proba=[j.want_proba for j in picked],
                    rows=rows,
                    pred=pred,
                    proba=proba,
                    time_ns=time.time_ns(),
                )
            )
        except Exception:  # capture must never fail a prediction
            log.exception("capturing a batch of %d requests failed", len(picked))

    def _observe(self, loaded: Loaded, rows: Any, pred: np.ndarray) -> None:
        # Monitoring must never fail a prediction that succeeded.
        try:
            self.metrics.predicted(
                len(pred), pred if self.cfg.signature.task == "classification" else None
            )
            if loaded.drift is not None:
                cols = (
                    [rows[:, j] for j in range(rows.shape[1])]
                    if isinstance(rows, np.ndarray)
                    else rows
                )
                loaded.drift.observe(cols)
        except Exception:
            log.exception("updating prediction metrics failed")


def _then(first: Callable[[Any], None], second: Callable[[Any], None]) -> Callable[[Any], None]:
    def both(outcome: Any) -> None:
        first(outcome)
        second(outcome)

    return both


MAX_ID_CHARS = 256


def check_request_id(rid: str) -> None:
    """A request id is echoed in a header and stored with captures: short, printable
    ASCII (a CR or LF would let a client write headers into its own response)."""
    if not rid or len(rid) > MAX_ID_CHARS or not rid.isascii() or not rid.isprintable():
        raise RequestError(
            400, f"request id must be 1 to {MAX_ID_CHARS} printable ASCII characters"
        )


def _header_length(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    if not text.isdigit() or len(text) > 12:
        raise RequestError(400, "Inference-Header-Content-Length must be a non-negative integer")
    return int(text)


def _decompress(body: bytes, wbits: int, limit: int) -> bytes:
    """Inflate at most ``limit`` bytes: a small compressed body must not become a
    huge one in memory (413 instead)."""
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as err:
        raise RequestError(400, f"the compressed body cannot be decompressed: {err}") from err
    if len(out) > limit:
        raise RequestError(413, f"decompressed request body larger than {limit} bytes")
    if not d.eof:
        raise RequestError(400, "the compressed body is truncated")
    return out


def _labels(classes: np.ndarray) -> list[str]:
    return [str(c.item() if hasattr(c, "item") else c) for c in classes]
