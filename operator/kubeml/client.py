"""A Python client for KubeML, for notebooks and scripts.

It speaks to the cluster the way kubectl does (the current kubeconfig and context, or
the ones you name) and to S3 with the credentials in your environment, the way the
`kubeml` commands do. Objects go in as the pydantic models of ``kubeml.api`` (or as
plain manifests, validated by the same models first) and come back as those models::

    from kubeml.api import Dataset
    from kubeml.client import Client

    kml = Client(namespace="team-a")
    kml.apply(Dataset.model_validate({...}))
    kml.wait("Dataset", "iris")                 # progress lines until it is Ready
    run = kml.wait("TrainingRun", "iris-rf")    # until it Succeeded (raises if it failed)
    kml.metrics("iris-rf")                      # {"test": {...}, "validation": {...}}
    kml.trials("iris-rf")                       # every trial, as a pandas DataFrame
    kml.predict("iris", [[5.1, 3.5, 1.4, 0.2]]) # through the Deployment's Service

Predictions go to the Deployment's Service: straight to its ClusterIP when this process
can reach it (a notebook in a pod of the cluster; the local control plane), else
through the apiserver's service proxy
(``/api/v1/namespaces/NS/services/NAME:http/proxy/...``), which works from anywhere the
kubeconfig works, with no port-forward, for a user allowed to ``create``
``services/proxy`` in the namespace (the built-in ``edit`` role is).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from kubernetes import config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from . import health
from . import lineage as lineage_
from .api import (
    API_VERSION,
    Dataset,
    Deployment,
    ManifestError,
    ModelVersion,
    Resource,
    TrainingRun,
    parse_manifest,
)
from .k8s import objects
from .storage import ArtifactStore, S3Settings, parse_uri
from .storage.errors import IntegrityError, StorageError

R = TypeVar("R", bound=Resource)
Progress = Callable[[str], None]
FIELD_MANAGER = "kubeml-client"
KINDS: dict[str, type[Resource]] = {
    "Dataset": Dataset,
    "TrainingRun": TrainingRun,
    "ModelVersion": ModelVersion,
    "Deployment": Deployment,
}
# Seconds between attempts when the Service has no ready endpoint for a moment.
RETRIES = (0.5, 1.0, 2.0, 4.0)
SERVICE_PORT = 80  # the Deployment's Service's HTTP port (named http)
Via = Literal["auto", "apiserver", "cluster-ip"]
# Bypasses any proxy from the environment: a ClusterIP is reached directly or not at all.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# `kubeml report` names: a version by default, else kubectl's names of the two kinds.
REPORT_KINDS = {
    "": "ModelVersion",
    "mv": "ModelVersion",
    "modelversion": "ModelVersion",
    "modelversions": "ModelVersion",
    "trun": "TrainingRun",
    "trainingrun": "TrainingRun",
    "trainingruns": "TrainingRun",
}
# The Open Inference Protocol's datatype for each signature dtype.
DATATYPES = {
    "number": "FP64",
    "integer": "INT64",
    "boolean": "BOOL",
    "string": "BYTES",
    "category": "BYTES",
}


class KubeMLError(Exception):
    """Anything the client could not do, with a message naming the object."""


class _Unavailable(Exception):
    """No server answered for now; worth another try."""


class NotFound(KubeMLError):
    pass


class WaitFailed(KubeMLError):
    """The object reached a state it will not leave by itself (Degraded, or a
    TrainingRun that failed), or the wait timed out."""

    def __init__(self, message: str, obj: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.object = obj


def _print(line: str) -> None:
    print(line, flush=True)


class Client:
    """KubeML objects in one namespace of one cluster."""

    def __init__(
        self,
        namespace: str | None = None,
        *,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        env: Mapping[str, str] | None = None,
        via: Via = "auto",
        api: ApiClient | None = None,
    ) -> None:
        """``namespace`` defaults to the context's (else ``default``), like kubectl;
        ``kubeconfig`` to $KUBECONFIG or ~/.kube/config. ``env`` holds the S3 settings
        (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ..., KUBEML_BUCKET; default os.environ),
        needed only to read trials and reports. ``via`` is how predictions reach a
        Service: ``auto`` (its ClusterIP when reachable from here, else the apiserver's
        service proxy), ``apiserver`` or ``cluster-ip``."""
        path = str(kubeconfig) if kubeconfig is not None else None
        if api is None:
            api = config.new_client_from_config(config_file=path, context=context)
        self.api = api
        self.namespace = namespace or _context_namespace(path, context)
        self._env = dict(os.environ if env is None else env)
        self.via: Via = via
        self._routes: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {}

    # -- objects ---------------------------------------------------------------------

    def create(self, obj: Resource | Mapping[str, Any]) -> Resource:
        """Create the object (in this client's namespace unless it names one); the
        manifest is validated by the kubeml.api models first."""
        doc = self._manifest(obj)
        try:
            made = objects.request(self.api, "POST", self._path(doc["kind"], None), body=doc)
        except ApiException as err:
            raise self._error("create", doc, err) from err
        return _typed(made)

    def apply(self, obj: Resource | Mapping[str, Any]) -> Resource:
        """Create or update the object with server-side apply, like `kubectl apply
        --server-side`: fields this client set before and leaves out are removed."""
        doc = self._manifest(obj)
        name = doc["metadata"]["name"]
        try:
            made = objects.request(
                self.api,
                "PATCH",
                self._path(doc["kind"], name),
                body=doc,
                content_type="application/apply-patch+yaml",
                query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            )
        except ApiException as err:
            raise self._error("apply", doc, err) from err
        return _typed(made)

    @overload
    def get(self, kind: type[R], name: str) -> R: ...
    @overload
    def get(self, kind: str, name: str) -> Resource: ...
    def get(self, kind: str | type[Resource], name: str) -> Resource:
        """The object as the model of its kind (status included)."""
        return _typed(self._raw(_kind(kind), name))

    def get_all(self, kind: str | type[Resource]) -> list[Resource]:
        """Every object of the kind in the namespace."""
        items = objects.list_(self.api, API_VERSION, _kind(kind), self.namespace)
        return [_typed(i) for i in items]

    def delete(self, kind: str | type[Resource], name: str) -> None:
        try:
            objects.request(self.api, "DELETE", self._path(_kind(kind), name))
        except ApiException as err:
            if err.status != 404:
                raise self._error("delete", {"kind": _kind(kind), "name": name}, err) from err

    # -- waiting ---------------------------------------------------------------------

    @overload
    def wait(
        self,
        kind: type[R],
        name: str,
        *,
        condition: str | None = None,
        timeout: float = 600.0,
        interval: float = 1.0,
        progress: Progress | None = _print,
    ) -> R: ...
    @overload
    def wait(
        self,
        kind: str,
        name: str,
        *,
        condition: str | None = None,
        timeout: float = 600.0,
        interval: float = 1.0,
        progress: Progress | None = _print,
    ) -> Resource: ...
    def wait(
        self,
        kind: str | type[Resource],
        name: str,
        *,
        condition: str | None = None,
        timeout: float = 600.0,
        interval: float = 1.0,
        progress: Progress | None = _print,
    ) -> Resource:
        """Wait until the object is done: Ready (a TrainingRun: Succeeded), as Argo CD
        and Flux judge it, or ``condition`` True when one is named. Each change of
        state is passed to ``progress`` (printed by default; None is quiet). Raises
        WaitFailed when the object is Degraded (a failed run, a validation failure, an
        artifact that does not match) or at the timeout."""
        k = _kind(kind)
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        last = ""
        while True:
            doc = self._raw(k, name, missing_ok=True)
            verdict, message = self._judge(k, doc, condition)
            if message != last and progress is not None:
                progress(f"[{time.monotonic() - started:6.1f}s] {k} {name}: {message}")
                last = message
            if verdict == health.HEALTHY:
                assert doc is not None
                return _typed(doc)
            if verdict == health.DEGRADED:
                raise WaitFailed(f"{k.lower()} {self.namespace}/{name}: {message}", doc)
            if time.monotonic() >= deadline:
                raise WaitFailed(
                    f"{k.lower()} {self.namespace}/{name}: not done after {timeout:.0f}s: "
                    f"{message}",
                    doc,
                )
            time.sleep(interval)

    @staticmethod
    def _judge(kind: str, doc: Mapping[str, Any] | None, condition: str | None) -> tuple[str, str]:
        if doc is None:
            return health.PROGRESSING, "does not exist yet"
        verdict, message = health.health(kind, doc)
        if condition is None or verdict == health.DEGRADED:
            return verdict, message
        for c in (doc.get("status") or {}).get("conditions") or []:
            if c.get("type") == condition:
                done = c.get("status") == "True"
                return (health.HEALTHY if done else health.PROGRESSING), health.describe(c)
        return health.PROGRESSING, f"no {condition} condition yet"

    # -- results ---------------------------------------------------------------------

    def metrics(self, run: str) -> dict[str, dict[str, float]]:
        """A finished TrainingRun's metrics per split: ``{"test": ..., "validation": ...}``."""
        status = self._raw("TrainingRun", run).get("status") or {}
        out = {"test": dict(status.get("metrics") or {})}
        if status.get("validationMetrics"):
            out["validation"] = dict(status["validationMetrics"])
        return out

    def lineage(self, ref: str) -> lineage_.Lineage:
        """The chain dataset version -> run -> model version -> deployments through
        ``ref`` (``deployment/iris``, ``mv/iris-classifier-v1``, ...), as
        :class:`kubeml.lineage.Lineage`: ``.wire()`` gives the JSON form and
        :func:`kubeml.lineage.render` the tree `kubeml lineage` prints."""
        kind, name = lineage_.parse_ref(ref)
        found = {
            k: objects.list_(self.api, API_VERSION, k, self.namespace)
            for k in ("Dataset", "TrainingRun", "ModelVersion", "Deployment")
        }
        return lineage_.build(
            kind,
            name,
            datasets=found["Dataset"],
            runs=found["TrainingRun"],
            versions=found["ModelVersion"],
            deployments=found["Deployment"],
        )

    def trials(self, run: str) -> Any:
        """Every trial of a TrainingRun's search as a pandas DataFrame (one row per
        candidate: params, fold scores, mean, std, rank, times), read from S3."""
        import pandas as pd

        status = self._raw("TrainingRun", run).get("status") or {}
        uri = (status.get("trials") or {}).get("uri")
        if not uri:
            raise NotFound(f"trainingrun {self.namespace}/{run} has no trial table (no search?)")
        frame = pd.read_parquet(io.BytesIO(self._read(uri)))
        frame["params"] = [json.loads(p) for p in frame["params"]]
        return frame.sort_values("rank", kind="stable").reset_index(drop=True)

    def report(self, name: str, path: str | os.PathLike[str] | None = None) -> bytes:
        """The model report of a ModelVersion (or, named ``trainingrun/NAME``, of a run
        whose gates failed), its sha256 checked; written to ``path`` when given."""
        prefix, _, obj = name.rpartition("/")
        kind = REPORT_KINDS.get(prefix.lower())
        if kind is None:
            raise KubeMLError(
                f"{name}: a report belongs to a ModelVersion (NAME or mv/NAME) or a "
                "TrainingRun (trainingrun/NAME)"
            )
        ref = (self._raw(kind, obj).get("status") or {}).get("report")
        if not ref:
            raise NotFound(
                f"{kind.lower()} {self.namespace}/{obj} has no report (registered by hand, "
                "or trained before reports existed)"
            )
        data = self._read(ref["uri"], sha256=ref["sha256"])
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def _read(self, uri: str, *, sha256: str | None = None) -> bytes:
        try:
            bucket, key = parse_uri(uri)
            settings = dataclasses.replace(S3Settings.from_env(self._env), bucket=bucket)
            store = ArtifactStore(settings, env=self._env)
            return store.get_bytes(key, expected_sha256=sha256)
        except IntegrityError as err:
            raise KubeMLError(f"{uri}: sha256 {err.actual} is not the recorded {sha256}") from err
        except StorageError as err:
            raise KubeMLError(f"{uri}: {err.reason}: {err.message}") from err

    # -- predictions -----------------------------------------------------------------

    def infer(
        self, deployment: str, rows: Sequence[Sequence[Any]] | Any, *, version: int | None = None
    ) -> dict[str, Any]:
        """One Open Inference Protocol v2 request through the Deployment's Service:
        ``rows`` are lists in the signature's input order, or a DataFrame with its
        columns. Returns the v2 answer (outputs, model_version, id)."""
        dep = self._raw("Deployment", deployment)
        model = str(dep["spec"]["model"])
        served = ((dep.get("status") or {}).get("stable") or {}).get("modelVersion")
        if not served:
            raise KubeMLError(f"deployment {self.namespace}/{deployment} serves nothing yet")
        inputs = self._raw("ModelVersion", served)["spec"]["signature"]["inputs"]
        columns = _columns(rows, [str(c["name"]) for c in inputs])
        body = {
            "inputs": [
                {
                    "name": c["name"],
                    "shape": [len(values)],
                    "datatype": DATATYPES.get(str(c["dtype"]), "FP64"),
                    "data": values,
                }
                for c, values in zip(inputs, columns, strict=True)
            ]
        }
        target = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        send = self._route(deployment)
        for wait in (*RETRIES, None):
            try:
                return send(target, body)
            except _Unavailable as err:
                # No ready server behind the Service this moment (a pod restarting,
                # endpoints not updated yet): try again briefly, then say so.
                if wait is None:
                    raise KubeMLError(f"deployment {self.namespace}/{deployment}: {err}") from err
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _route(self, deployment: str) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
        """How requests reach the Deployment's Service, decided once per Service: its
        ClusterIP when this process can connect to it (in a pod of the cluster, or on
        the local control plane, whose ClusterIPs are loopback addresses), else the
        apiserver's service proxy."""
        if deployment in self._routes:
            return self._routes[deployment]
        ip = None
        if self.via != "apiserver":
            svc = objects.get(self.api, "v1", "Service", self.namespace, deployment) or {}
            ip = (svc.get("spec") or {}).get("clusterIP")
            if self.via == "cluster-ip" and not ip:
                raise KubeMLError(f"service {self.namespace}/{deployment} has no ClusterIP")
            if self.via == "auto" and ip and not _reachable(ip, SERVICE_PORT):
                ip = None
        send = (
            functools.partial(_post_direct, f"http://{ip}:{SERVICE_PORT}")
            if ip and ip != "None"
            else functools.partial(self._post_proxied, deployment)
        )
        self._routes[deployment] = send
        return send

    def _post_proxied(self, service: str, target: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"/api/v1/namespaces/{self.namespace}/services/{service}:http/proxy{target}"
        try:
            answer: dict[str, Any] = objects.request(self.api, "POST", url, body=body)
        except ApiException as err:
            if err.status in (502, 503):
                raise _Unavailable(f"{err.status} {err.reason} from the apiserver's proxy") from err
            raise KubeMLError(
                f"service {self.namespace}/{service}: {err.status} {err.reason}: "
                f"{(err.body or '')[:500]}"
            ) from err
        return answer

    def predict(
        self, deployment: str, rows: Sequence[Sequence[Any]] | Any, *, version: int | None = None
    ) -> list[Any]:
        """The model's predictions for ``rows`` (one per row), through its Deployment."""
        answer = self.infer(deployment, rows, version=version)
        for out in answer.get("outputs") or []:
            if out.get("name") == "predict":
                return list(out["data"])
        raise KubeMLError(f"deployment {self.namespace}/{deployment}: no predict output")

    # -- helpers ---------------------------------------------------------------------

    def _manifest(self, obj: Resource | Mapping[str, Any]) -> dict[str, Any]:
        doc = obj.to_wire() if isinstance(obj, Resource) else dict(obj)
        doc.pop("status", None)
        meta = dict(doc.get("metadata") or {})
        meta.setdefault("namespace", self.namespace)
        if meta["namespace"] != self.namespace:
            raise KubeMLError(
                f"{doc.get('kind')} {meta.get('name')} names namespace {meta['namespace']}; "
                f"this client works in {self.namespace}"
            )
        doc["metadata"] = meta
        try:
            parse_manifest(doc)
        except ManifestError as err:
            raise KubeMLError(
                f"{doc.get('kind')} {meta.get('name')}: " + "; ".join(err.problems)
            ) from err
        return doc

    def _path(self, kind: str, name: str | None) -> str:
        return objects.path(API_VERSION, kind, self.namespace, name)

    @overload
    def _raw(self, kind: str, name: str) -> dict[str, Any]: ...
    @overload
    def _raw(self, kind: str, name: str, *, missing_ok: bool) -> dict[str, Any] | None: ...
    def _raw(self, kind: str, name: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        try:
            doc = objects.get(self.api, API_VERSION, kind, self.namespace, name)
        except ApiException as err:
            raise self._error("read", {"kind": kind, "name": name}, err) from err
        if doc is None and not missing_ok:
            raise NotFound(f"{kind.lower()} {self.namespace}/{name} does not exist")
        return doc

    def _error(self, verb: str, doc: Mapping[str, Any], err: ApiException) -> KubeMLError:
        name = (doc.get("metadata") or {}).get("name") or doc.get("name")
        detail = err.reason
        with contextlib.suppress(
            ValueError, AttributeError
        ):  # the apiserver's Status, if it sent one
            detail = json.loads(err.body or "{}").get("message") or detail
        return KubeMLError(
            f"cannot {verb} {str(doc.get('kind')).lower()} {self.namespace}/{name}: "
            f"{err.status} {detail}"
        )


def _kind(kind: str | type[Resource]) -> str:
    if isinstance(kind, str):
        if kind not in KINDS:
            raise KubeMLError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        return kind
    for name, cls in KINDS.items():
        if issubclass(kind, cls):
            return name
    raise KubeMLError(f"{kind.__name__} is not a KubeML kind")


def _typed(doc: Mapping[str, Any]) -> Resource:
    """The object as its model; fields this client does not know (a newer operator's)
    are tolerated in status and metadata, as the models allow."""
    try:
        return parse_manifest({"apiVersion": API_VERSION, **doc})
    except ManifestError as err:
        raise KubeMLError(
            f"the server returned a {doc.get('kind')} this client cannot read: {err}"
        ) from err


def _columns(rows: Any, names: Sequence[str]) -> list[list[Any]]:
    """Per input, its values: from a DataFrame by column name, else from rows in order."""
    if hasattr(rows, "columns") and hasattr(rows, "to_dict"):
        missing = [n for n in names if n not in rows.columns]
        if missing:
            raise KubeMLError(f"the rows lack the model's inputs {missing}")
        return [rows[n].tolist() for n in names]
    table = [list(r) for r in rows]
    wrong = [i for i, r in enumerate(table) if len(r) != len(names)]
    if wrong:
        raise KubeMLError(
            f"rows {wrong[:5]} do not have {len(names)} values (the model's inputs: {list(names)})"
        )
    return [[r[i] for r in table] for i in range(len(names))]


def _reachable(ip: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def _post_direct(base: str, target: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        base + target,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with _HTTP.open(request, timeout=30) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer
    except urllib.error.HTTPError as err:
        detail = err.read()[:500].decode(errors="replace")
        if err.code in (502, 503):
            raise _Unavailable(f"{err.code} from {base}: {detail}") from err
        raise KubeMLError(f"{base}{target}: {err.code}: {detail}") from err
    except (urllib.error.URLError, ConnectionError) as err:
        raise _Unavailable(f"{base}: {err}") from err


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError):
        return "default"
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


__all__ = ["Client", "KubeMLError", "NotFound", "WaitFailed"]
