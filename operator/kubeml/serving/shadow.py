"""Shadow traffic: a mirrored copy of a share of requests, whose answers are discarded.

A stable server configured with a shadow version sends exactly ``percent`` of every
100 version-less inference requests it answers itself (:class:`~.forward.Split`) to
the shadow version's Service, and answers the client from its own prediction as
usual: the client never waits for the shadow and never sees its answer or its
failure. The mirror is fire-and-forget on the server's loop, bounded like forwarding
(:class:`~.forward.Forwarder`: connections, deadline, answer size); at the bound a
mirror is skipped and counted.

When both answers are in, the shadow's predictions are compared with the stable
server's own, row by row (:func:`agreed_rows`): the stable prediction is already
there, so agreement costs no extra predict. A classifier's rows agree when the
labels are equal; a regressor's when ``|shadow - stable| <= tolerance * max(1,
|stable|)`` (relative for large values, absolute near zero). The counters
``kubeml_shadow_rows_compared_total`` and ``kubeml_shadow_rows_agreed_total`` give
agreement = agreed / compared.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import orjson

from . import binary
from .decode import PREDICT
from .errors import RequestError
from .forward import Answer, Forwarder, ForwardError, Split

# Outcomes of a mirrored request (kubeml_shadow_requests_total{outcome}).
ANSWERED, ERROR, UNREACHABLE, SKIPPED = "answered", "error", "unreachable", "skipped"
HEADER_LENGTH = "inference-header-content-length"


class ShadowMetrics(Protocol):
    def shadow(self, target: str, outcome: str, seconds: float) -> None: ...
    def shadow_rows(self, target: str, compared: int, agreed: int) -> None: ...


class UnusableAnswer(ValueError):
    """A 2xx answer from the shadow whose predictions cannot be read."""


def predictions(answer: Answer, protocol: str) -> np.ndarray | None:
    """The ``predict`` output of a shadow's answer (v2 JSON, v2 with binary tensors,
    or v1), or None when the answer carries none (the client asked for
    probabilities only)."""
    try:
        if protocol == "v1":
            doc = orjson.loads(answer.body)
            preds = doc.get("predictions") if isinstance(doc, dict) else None
            return None if preds is None else np.asarray(preds)
        return _v2_predict(answer)
    except (orjson.JSONDecodeError, RequestError, ValueError, TypeError, AttributeError) as err:
        raise UnusableAnswer(str(err)) from err


def _v2_predict(answer: Answer) -> np.ndarray | None:
    head_len = next((int(v) for k, v in answer.headers if k == HEADER_LENGTH), None)
    body = answer.body
    head, rest = (body, b"") if head_len is None else (body[:head_len], body[head_len:])
    doc = orjson.loads(head)
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(outputs, list):
        raise UnusableAnswer("no outputs in the answer")
    offset = 0
    for out in outputs:
        size = (
            ((out.get("parameters") or {}).get("binary_data_size")) if "data" not in out else None
        )
        if out.get("name") == PREDICT:
            if size is None:
                return np.asarray(out.get("data"))
            raw = memoryview(rest)[offset : offset + int(size)]
            return binary.decode(str(out.get("datatype")), raw, "shadow predict output")
        if size is not None:
            offset += int(size)
    return None


def agreed_rows(stable: np.ndarray, shadow: np.ndarray, task: str, tolerance: float) -> int:
    """Rows on which the shadow agrees with stable; a different row count agrees on
    none (the shadow answered something else)."""
    if stable.shape[0] != shadow.reshape(-1).shape[0]:
        return 0
    shadow = shadow.reshape(-1)
    if task == "regression":
        a, b = stable.astype(np.float64), shadow.astype(np.float64)
        return int(np.count_nonzero(np.abs(a - b) <= tolerance * np.maximum(1.0, np.abs(a))))
    if stable.dtype.kind in "biuf" and shadow.dtype.kind in "biuf":
        return int(np.count_nonzero(stable == shadow))
    return int(np.count_nonzero(stable.astype(str) == shadow.astype(str)))


class Shadow:
    """The stable server's side of shadow traffic to one version."""

    def __init__(
        self,
        forwarder: Forwarder,
        percent: int,
        version: str,
        task: str,
        tolerance: float,
        metrics: ShadowMetrics,
    ) -> None:
        self.forwarder = forwarder
        self.split = Split(percent)
        self.version = version
        self.task = task
        self.tolerance = tolerance
        self.metrics = metrics

    def mirror(
        self, path: str, body: bytes, headers: list[tuple[str, bytes]], protocol: str
    ) -> Callable[[Any], None] | None:
        """Mirror this request if it falls in the share; then returns what to call with
        the stable server's own outcome (a Prediction or an exception)."""
        if not self.split.take():
            return None
        if self.forwarder.saturated():
            self.metrics.shadow(self.version, SKIPPED, 0.0)
            return None
        pair = _Pair(self, protocol)
        self.forwarder.forward(path, body, headers, pair.answered)
        return pair.stable

    def compare(self, stable: np.ndarray, shadow: np.ndarray) -> None:
        agreed = agreed_rows(stable, shadow, self.task, self.tolerance)
        self.metrics.shadow_rows(self.version, int(stable.shape[0]), agreed)


_PENDING = object()
_NOTHING = object()  # nothing to compare on this side


class _Pair:
    """One mirrored request: compares once both the stable prediction and the
    shadow's answer are in, whichever comes last."""

    __slots__ = ("mine", "owner", "protocol", "start", "theirs")

    def __init__(self, owner: Shadow, protocol: str) -> None:
        self.owner = owner
        self.protocol = protocol
        self.start = time.perf_counter()
        self.mine: Any = _PENDING
        self.theirs: Any = _PENDING

    def stable(self, outcome: Any) -> None:
        pred = getattr(outcome, "pred", None)
        self.mine = pred if isinstance(pred, np.ndarray) else _NOTHING
        self._both()

    def answered(self, answer: Answer | ForwardError) -> None:
        took = time.perf_counter() - self.start
        owner = self.owner
        self.theirs = _NOTHING
        if isinstance(answer, ForwardError):
            owner.metrics.shadow(owner.version, UNREACHABLE, took)
        elif not 200 <= answer.status < 300:
            owner.metrics.shadow(owner.version, ERROR, took)
        else:
            try:
                pred = predictions(answer, self.protocol)
            except UnusableAnswer:
                owner.metrics.shadow(owner.version, ERROR, took)
            else:
                owner.metrics.shadow(owner.version, ANSWERED, took)
                self.theirs = _NOTHING if pred is None else pred
        self._both()

    def _both(self) -> None:
        mine, theirs = self.mine, self.theirs
        if mine is _PENDING or theirs is _PENDING:
            return
        if isinstance(mine, np.ndarray) and isinstance(theirs, np.ndarray):
            self.owner.compare(mine, theirs)
