"""Fetching, verifying and preparing the model, off the event loop.

The artifact's bytes are re-hashed before anything parses them
(``kubeml.models.load``). Whatever may change in the store is retried with
back-off while the server stays unready with the reason: S3 unreachable or
refusing, the object missing, and bytes that do not match the recorded sha256
(someone may restore them; a pod that refused once must become ready by itself
when they are right, not wait for a restart). What the verified bytes say is
final: an untrusted type or a signature that does not fit the model.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .. import models
from .config import ServerConfig
from .drift import DriftWindow, window_from_profile
from .errors import NotReady
from .object_fetch import ChildReader, FetchError, StoreReader
from .predictor import Predictor
from .signature import CompiledSignature

log = logging.getLogger("kubeml.serve")

RETRY_FIRST_S = 1.0
# Low enough that a restored artifact is served within well under a minute, high
# enough that a broken pod costs S3 one download per quarter minute.
RETRY_MAX_S = 15.0
# Verdicts on bytes that matched their sha256: retrying cannot change them.
FINAL = frozenset({"UntrustedArtifact", "CorruptArtifact", "SignatureMismatch"})


@dataclass
class Loaded:
    predictor: Predictor
    drift: DriftWindow | None


class Reader(Protocol):
    def read(self, uri: str) -> bytes: ...


# A reader, or a function making a store per bucket (read in this process).
Source = Reader | Callable[[str], Any]


def reader_of(source: Source | None) -> Reader:
    """None: the default, a child process per read (boto3 stays out of the server)."""
    if source is None:
        return ChildReader()
    if isinstance(source, ChildReader | StoreReader):
        return source
    assert callable(source)
    return StoreReader(source)


def check_signature(model: Any, sig: CompiledSignature) -> None:
    """The model must take as many features as the signature names, and a classifier's
    classes must be the signature's (same order: probabilities are reported by it)."""
    n_in = getattr(model, "n_features_in_", None)
    if n_in is not None and int(n_in) != sig.n_features:
        raise NotReady(
            "SignatureMismatch",
            f"the model takes {n_in} features, the signature names {sig.n_features}",
        )
    names = getattr(model, "feature_names_in_", None)
    if names is not None and [str(x) for x in names] != list(sig.features):
        raise NotReady(
            "SignatureMismatch",
            f"the model was fitted on columns {list(names)[:10]}, the signature names "
            f"{list(sig.features)[:10]}",
        )
    classes = getattr(model, "classes_", None)
    if sig.task == "classification" and sig.classes is not None and classes is not None:
        labels = [str(c.item() if hasattr(c, "item") else c) for c in np.asarray(classes)]
        if labels != list(sig.classes):
            raise NotReady(
                "SignatureMismatch",
                f"the model's classes {labels[:10]} differ from the signature's "
                f"{list(sig.classes)[:10]}",
            )


def load_once(cfg: ServerConfig, source: Source | None) -> Loaded:
    """One attempt. Raises NotReady or FetchError."""
    reader = reader_of(source)
    try:
        data = reader.read(cfg.artifact_uri)
    except FetchError as err:
        if err.reason == "IntegrityError":
            raise NotReady("ArtifactMismatch", err.message) from err
        raise
    try:
        model = models.load(data, cfg.artifact_sha256)
    except models.ModelArtifactError as err:
        raise NotReady(err.reason, f"{cfg.artifact_uri}: {err}") from err
    check_signature(model, cfg.signature)
    predictor = Predictor(model, cfg.signature)
    predictor.warm_up()
    return Loaded(predictor, load_drift(cfg, reader))


def load_drift(cfg: ServerConfig, source: Source | None) -> DriftWindow | None:
    """The drift window, or None without a usable profile (serving goes on without)."""
    if not cfg.profile_uri:
        return None
    try:
        profile = json.loads(reader_of(source).read(cfg.profile_uri))
    except (FetchError, ValueError) as err:
        log.warning("drift disabled: cannot read profile %s: %s", cfg.profile_uri, err)
        return None
    window = window_from_profile(profile, cfg.signature.features, cfg.drift_window)
    if not window.features:
        log.warning("drift disabled: profile %s has no bins for any feature", cfg.profile_uri)
        return None
    log.info("drift: PSI over %d features, window %d rows", len(window.features), cfg.drift_window)
    return window


def load_with_retries(
    cfg: ServerConfig,
    source: Source | None,
    stop: threading.Event,
    on_retry: Callable[[str, str], None],
) -> Loaded:
    """Keep trying while the failure is one the store may fix; ``on_retry(reason,
    message)`` reports each failed attempt so readiness says why it is not ready."""
    reader = reader_of(source)
    delay = RETRY_FIRST_S
    while True:
        try:
            return load_once(cfg, reader)
        except FetchError as err:
            reason, message = err.reason, err.message
        except NotReady as err:
            if err.reason in FINAL:
                raise
            reason, message = err.reason, err.message
        on_retry(reason, message)
        log.warning(
            "loading %s: %s: %s (retrying in %.0fs)", cfg.artifact_uri, reason, message, delay
        )
        if stop.wait(delay):
            raise NotReady("ShuttingDown", "stopped while loading the model")
        delay = min(RETRY_MAX_S, delay * 2)
