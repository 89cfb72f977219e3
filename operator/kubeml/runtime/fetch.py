"""Loading a Dataset's source: the I/O half (http, S3) in front of kubeml.data.sources."""

from __future__ import annotations

import http.client
import io
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..api.dataset import DataSource, ProductionSource, S3Source, UrlSource
from ..data import sources
from ..data.errors import DataError
from ..storage import (
    AccessDenied,
    ArtifactStore,
    BucketNotFound,
    KeyNotFound,
    S3Settings,
    StorageError,
)
from ..storage.store import ObjectInfo

URL_TIMEOUT_S = 30.0
CHUNK = 1 << 20
SOURCE_CREDENTIALS_PREFIX = "KUBEML_SOURCE_"
USER_AGENT = "kubeml-prepare/0.1"


@dataclass(frozen=True)
class Loaded:
    frame: pd.DataFrame
    label: str  # names the source in messages: "builtin iris", "s3://b/k", the URL
    size: int  # bytes fetched (0 for generated data)


def _gib(n: int) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def check_size(label: str, size: int, limit: int | None, verb: str = "is") -> None:
    """Fail before loading when the source alone cannot fit in the Job's memory.

    Only a source clearly over the limit is refused: parsing needs a multiple of
    the raw size, so anything larger than the limit is certain to be OOM-killed,
    and failing now (exit 2) beats a restart loop of OOM kills.
    """
    if limit is not None and size > limit:
        raise DataError(
            "SourceTooLarge",
            f"{label} {verb} {_gib(size)} ({size} bytes), more than the preparation Job's memory "
            f"limit of {_gib(limit)} ({limit} bytes); raise spec.resources.limits.memory",
        )


def load_source(
    source: DataSource,
    env: Mapping[str, str],
    *,
    memory_limit: int | None,
    namespace: str = "",
    target: str = "target",
) -> Loaded:
    if source.builtin is not None:
        name = source.builtin.name
        return Loaded(sources.load_builtin(name), f"builtin data set {name}", 0)
    if source.synthetic is not None:
        syn = source.synthetic
        label = f"synthetic {syn.task} data ({syn.rows} x {syn.features}, seed {syn.seed})"
        check_size(label, sources.synthetic_size(syn), memory_limit, "needs about")
        return Loaded(sources.load_synthetic(syn), label, 0)
    if source.url is not None:
        return _load_url(source.url, memory_limit)
    if source.production is not None:
        return _load_production(source.production, env, memory_limit, namespace, target)
    assert source.s3 is not None  # DataSource guarantees exactly one
    return _load_s3(source.s3, env, memory_limit)


# -- http(s) -------------------------------------------------------------------------


def _load_url(src: UrlSource, limit: int | None) -> Loaded:
    data = fetch_url(src.url, limit)
    fmt = sources.infer_format(src.url, src.format, data[:4])
    return Loaded(sources.parse_table(data, fmt, src.url), src.url, len(data))


def fetch_url(url: str, limit: int | None, timeout: float = URL_TIMEOUT_S) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            if length and length.isdigit():
                check_size(url, int(length), limit)
            return _read_capped(resp, url, limit)
    except urllib.error.HTTPError as err:
        raise _http_error(url, err.code, err.reason) from err
    except urllib.error.URLError as err:
        raise DataError(
            "SourceUnreachable", f"cannot reach {url}: {err.reason}", transient=True
        ) from err
    except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise DataError(
            "SourceUnreachable",
            f"reading {url} failed: {err or type(err).__name__}",
            transient=True,
        ) from err


def _read_capped(resp: http.client.HTTPResponse, url: str, limit: int | None) -> bytes:
    # Without a Content-Length the size is known only while reading: stop at the limit.
    buf = bytearray()
    while chunk := resp.read(CHUNK):
        buf += chunk
        if limit is not None and len(buf) > limit:
            check_size(f"{url} (no Content-Length; stopped reading)", len(buf), limit)
    return bytes(buf)


def _http_error(url: str, code: int, reason: object) -> DataError:
    text = f"{url} answered HTTP {code} {reason}"
    if code in (404, 410):
        return DataError("SourceNotFound", text)
    if code in (401, 403):
        return DataError("AccessDenied", text)
    # 408, 429 and 5xx may pass; other 4xx will not.
    transient = code in (408, 429) or code >= 500
    return DataError("SourceUnreachable", text, transient=transient)


# -- S3 ------------------------------------------------------------------------------


def source_store(src: S3Source, env: Mapping[str, str]) -> ArtifactStore:
    """A store for the source's bucket: the operator's endpoint and keys unless the spec
    names others (its credentials arrive as KUBEML_SOURCE_AWS_* through secretKeyRef)."""
    base = S3Settings.from_env(env)
    settings = replace(
        base,
        bucket=src.bucket or base.bucket,
        endpoint_url=src.endpoint or base.endpoint_url,
        credentials_env_prefix=SOURCE_CREDENTIALS_PREFIX if src.credentials else "",
    )
    try:
        return ArtifactStore(settings, env=env)
    except StorageError as err:
        raise _source_error(err) from err


def _source_error(err: StorageError) -> DataError:
    if isinstance(err, KeyNotFound | BucketNotFound):
        return DataError("SourceNotFound", err.message)
    if isinstance(err, AccessDenied):
        return DataError("AccessDenied", err.message)
    if err.transient:
        return DataError("SourceUnreachable", err.message, transient=True)
    return DataError(err.reason, err.message)


def _is_data_object(obj: ObjectInfo, prefix: str) -> bool:
    # Folder markers and Hadoop/Spark side files (_SUCCESS, .crc) are not data.
    base = obj.key[len(prefix) :].rsplit("/", 1)[-1]
    return bool(base) and not base.startswith(("_", "."))


def _load_s3(src: S3Source, env: Mapping[str, str], limit: int | None) -> Loaded:
    store = source_store(src, env)
    try:
        if src.key is not None:
            objects = [store.head(src.key)]
            label = store.uri(src.key)
        else:
            prefix = src.prefix or ""
            label = store.uri(prefix)
            objects = [o for o in store.list_prefix(prefix) if _is_data_object(o, prefix)]
            if not objects:
                raise DataError("SourceNotFound", f"no objects under {label}")
        total = sum(o.size for o in objects)
        check_size(label, total, limit)
        parts = []
        for obj in objects:
            data = store.get_bytes(obj.key)
            fmt = sources.infer_format(obj.uri, src.format, data[:4])
            parts.append((obj.uri, sources.parse_table(data, fmt, obj.uri)))
            del data
    except StorageError as err:
        raise _source_error(err) from err
    return Loaded(sources.concat_tables(parts), label, total)


# -- production captures ---------------------------------------------------------------


def _load_production(
    src: ProductionSource, env: Mapping[str, str], limit: int | None, namespace: str, target: str
) -> Loaded:
    """The Deployment's captures and feedback, from this namespace's prefixes only
    (the namespace is the Dataset's own, set by the operator)."""
    from datetime import datetime

    from ..data import production
    from ..storage import layout

    store = ArtifactStore(S3Settings.from_env(env), env=env)
    tables = {}
    total = 0
    try:
        for kind, prefix in (
            ("captures", layout.capture_prefix(namespace, src.deployment)),
            ("feedback", layout.feedback_prefix(namespace, src.deployment)),
        ):
            objects = [o for o in store.list_prefix(prefix) if o.key.endswith(".parquet")]
            total += sum(o.size for o in objects)
            check_size(store.uri(prefix), total, limit)
            parts = []
            for obj in objects:
                data = store.get_bytes(obj.key)
                try:
                    parts.append(pq.read_table(io.BytesIO(data)))
                except (pa.ArrowException, OSError) as err:
                    raise DataError(
                        "MalformedParquet", f"{obj.uri} is not a valid Parquet file: {err}"
                    ) from err
            tables[kind] = _concat(parts, kind)
    except StorageError as err:
        raise _source_error(err) from err
    where = store.uri(layout.capture_prefix(namespace, src.deployment))
    label = f"deployment {src.deployment}'s captures ({where})"
    frame = production.join(
        tables["captures"],
        tables["feedback"],
        target,
        label,
        since=datetime.fromisoformat(src.since) if src.since else None,
        until=datetime.fromisoformat(src.until) if src.until else None,
    )
    return Loaded(frame, label, total)


def _concat(parts: list[pa.Table], kind: str) -> pa.Table:
    if not parts:
        return pa.table({"id": pa.array([], pa.string())})
    # Files of different model versions may differ in kept inputs: unify, fill nulls.
    return pa.concat_tables(parts, promote_options="permissive")
