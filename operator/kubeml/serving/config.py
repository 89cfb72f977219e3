"""The server's settings, from the environment the operator gives its pods."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import ValidationError

from .capture import CaptureConfig, CaptureConfigError
from .feedback import FeedbackConfig
from .signature import CompiledSignature

DEFAULT_PORT = 8080
DEFAULT_MAX_ROWS = 10_000
# Defaults of the API's ServerOptions, which the operator always sets explicitly.
DEFAULT_BATCH_ROWS = 1024
DEFAULT_BATCH_REQUESTS = 64


class ConfigError(Exception):
    """The environment does not describe a servable model: the pod cannot start."""


@dataclass(frozen=True)
class ServerConfig:
    model: str
    version: int
    modelversion: str
    artifact_uri: str
    artifact_sha256: str
    signature: CompiledSignature
    profile_uri: str | None = None
    max_batch_size: int = DEFAULT_BATCH_ROWS
    max_batch_requests: int = DEFAULT_BATCH_REQUESTS
    max_batch_delay_ms: float = 2.0
    max_request_bytes: int = 8 << 20
    max_request_rows: int = DEFAULT_MAX_ROWS
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    # 0: no gRPC endpoint.
    grpc_port: int = 0
    # What one client can make the server hold (limits.py says why each is so).
    max_connections: int = 1024
    max_url_bytes: int = 8 << 10
    max_header_bytes: int = 64 << 10
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 75.0
    termination_log: str | None = None
    drift_window: int = 5000
    # After SIGTERM: keep serving (unready) this long, for endpoints to update.
    shutdown_delay_s: float = 3.0
    # Then at most this long for in-flight requests to finish.
    drain_timeout_s: float = 20.0
    # None: capture off (the default; a Deployment's spec.capture turns it on).
    capture: CaptureConfig | None = None
    # None: no feedback endpoint (it comes with capture).
    feedback: FeedbackConfig | None = None
    # Longest the capture writer gets to flush after draining (within the grace period).
    capture_flush_timeout_s: float = 5.0
    # Exact canary share (forward.py): this server forwards canary_percent of its
    # version-less inference requests to canary_url, at most forward_connections at once.
    canary_url: str | None = None
    canary_percent: int = 0
    canary_version: str | None = None
    forward_timeout_s: float = 10.0
    forward_connections: int = 64
    # Shadow traffic (shadow.py): mirror shadow_percent of the version-less inference
    # requests this server answers itself to shadow_url, answers discarded.
    shadow_url: str | None = None
    shadow_percent: int = 0
    shadow_version: str | None = None
    # A regressor's rows agree within tolerance * max(1, |stable|).
    shadow_tolerance: float = 0.01

    @property
    def version_str(self) -> str:
        return str(self.version)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerConfig:
        e = os.environ if env is None else env

        def need(name: str) -> str:
            value = e.get(name, "").strip()
            if not value:
                raise ConfigError(f"${name} is not set")
            return value

        def number(name: str, default: float, lo: float, hi: float) -> float:
            raw = e.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"${name}={raw!r} is not a number") from None
            if not lo <= value <= hi:
                raise ConfigError(f"${name}={raw} is outside [{lo:g}, {hi:g}]")
            return value

        try:
            signature = CompiledSignature.from_json(json.loads(need("KUBEML_SIGNATURE")))
        except (ValueError, ValidationError) as err:
            raise ConfigError(f"$KUBEML_SIGNATURE is not a valid signature: {err}") from None
        try:
            capture = CaptureConfig.from_env(e)
        except CaptureConfigError as err:
            raise ConfigError(str(err)) from None
        try:
            feedback = FeedbackConfig.from_env(e)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if capture is not None:
            named = set(capture.keep or ()) | set(capture.drop)
            unknown = sorted(named - set(signature.features))
            if unknown:
                raise ConfigError(f"capture names unknown inputs: {', '.join(unknown)}")
        sha = need("KUBEML_ARTIFACT_SHA256").lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ConfigError("$KUBEML_ARTIFACT_SHA256 is not a sha256 hex digest")
        uri = need("KUBEML_ARTIFACT_URI")
        if not uri.startswith("s3://"):
            raise ConfigError(f"$KUBEML_ARTIFACT_URI={uri!r} is not an s3:// URI")
        return cls(
            model=need("KUBEML_MODEL"),
            version=_version(need("KUBEML_MODEL_VERSION")),
            modelversion=e.get("KUBEML_MODELVERSION", "").strip() or need("KUBEML_MODEL"),
            artifact_uri=uri,
            artifact_sha256=sha,
            signature=signature,
            profile_uri=e.get("KUBEML_PROFILE_URI", "").strip() or None,
            max_batch_size=int(number("KUBEML_MAX_BATCH_SIZE", DEFAULT_BATCH_ROWS, 1, 65536)),
            max_batch_requests=int(
                number("KUBEML_MAX_BATCH_REQUESTS", DEFAULT_BATCH_REQUESTS, 1, 4096)
            ),
            max_batch_delay_ms=number("KUBEML_MAX_BATCH_DELAY_MS", 2.0, 0, 1000),
            max_request_bytes=int(number("KUBEML_MAX_REQUEST_BYTES", 8 << 20, 1024, 1 << 30)),
            max_request_rows=int(number("KUBEML_MAX_REQUEST_ROWS", DEFAULT_MAX_ROWS, 1, 10**7)),
            host=e.get("KUBEML_HOST", "").strip() or "0.0.0.0",
            port=int(number("KUBEML_PORT", DEFAULT_PORT, 1, 65535)),
            grpc_port=int(number("KUBEML_GRPC_PORT", 0, 0, 65535)),
            max_connections=int(number("KUBEML_MAX_CONNECTIONS", 1024, 1, 100_000)),
            header_timeout_s=number("KUBEML_HEADER_TIMEOUT_SECONDS", 10.0, 0.1, 3600),
            body_timeout_s=number("KUBEML_BODY_TIMEOUT_SECONDS", 30.0, 0.1, 3600),
            keepalive_timeout_s=number("KUBEML_KEEPALIVE_TIMEOUT_SECONDS", 75.0, 0.1, 3600),
            termination_log=e.get("KUBEML_TERMINATION_LOG", "").strip() or None,
            drift_window=int(number("KUBEML_DRIFT_WINDOW", 5000, 1, 1_000_000)),
            shutdown_delay_s=number("KUBEML_SHUTDOWN_DELAY_SECONDS", 3.0, 0, 300),
            drain_timeout_s=number("KUBEML_DRAIN_TIMEOUT_SECONDS", 20.0, 0, 3600),
            capture=capture,
            feedback=feedback,
            capture_flush_timeout_s=number("KUBEML_CAPTURE_FLUSH_TIMEOUT_SECONDS", 5.0, 0, 3600),
            canary_url=_upstream_url(
                "KUBEML_CANARY_URL", e.get("KUBEML_CANARY_URL", "").strip() or None
            ),
            canary_percent=int(number("KUBEML_CANARY_PERCENT", 0, 0, 100)),
            canary_version=e.get("KUBEML_CANARY_VERSION", "").strip() or None,
            forward_timeout_s=number("KUBEML_FORWARD_TIMEOUT_SECONDS", 10.0, 0.1, 600),
            forward_connections=int(number("KUBEML_FORWARD_CONNECTIONS", 64, 1, 10_000)),
            shadow_url=_upstream_url(
                "KUBEML_SHADOW_URL", e.get("KUBEML_SHADOW_URL", "").strip() or None
            ),
            shadow_percent=int(number("KUBEML_SHADOW_PERCENT", 0, 0, 100)),
            shadow_version=e.get("KUBEML_SHADOW_VERSION", "").strip() or None,
            shadow_tolerance=number("KUBEML_SHADOW_TOLERANCE", 0.01, 0, 1e9),
        )


def _version(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"$KUBEML_MODEL_VERSION={raw!r} is not a positive integer")
    return int(raw)


def _upstream_url(name: str, raw: str | None) -> str | None:
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(f"${name}={raw!r} is not http://host[:port]")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"${name}={raw!r} has an invalid port") from None
    return raw
