"""Where KubeML keeps things in the bucket: one prefix per namespace.

Namespaces are tenants. Everything the operator's Jobs write for a namespace lives
under ``namespaces/<namespace>/``, so a cluster admin can give each namespace S3
credentials scoped to its own prefix, and the operator can prove that a key it is
asked to delete or serve belongs to the namespace asking:

    namespaces/<ns>/datasets/<sha256>/        a prepared data version (content addressed)
    namespaces/<ns>/models/<model>/<sha256>.skops
    namespaces/<ns>/models/<model>/reports/<sha256>.html   a model report (its own digest)
    namespaces/<ns>/results/datasets/<dataset>/<job>.json
    namespaces/<ns>/results/trainingruns/<run>/<uid>.json
    namespaces/<ns>/captures/<deployment>/model=<m>/version=<n>/hour=<h>/*.parquet
    namespaces/<ns>/feedback/<deployment>/model=<m>/version=<n>/hour=<h>/*.parquet
    namespaces/<ns>/results/trainingruns/<run>/<uid>/trials.parquet   one row per candidate
    namespaces/<ns>/results/trainingruns/<run>/<uid>/shards/<i>.parquet   a search pod's rows
"""

from __future__ import annotations

from .uri import make_uri, parse_uri

ROOT = "namespaces"
MODEL_SUFFIX = ".skops"


def tenant_prefix(namespace: str) -> str:
    if not namespace or "/" in namespace:
        raise ValueError(f"not a namespace name: {namespace!r}")
    return f"{ROOT}/{namespace}/"


def dataset_prefix(namespace: str, version: str) -> str:
    return f"{tenant_prefix(namespace)}datasets/{version}/"


def dataset_uri(bucket: str, namespace: str, version: str) -> str:
    return make_uri(bucket, dataset_prefix(namespace, version))


def profile_uri(bucket: str, namespace: str, version: str) -> str:
    return make_uri(bucket, dataset_prefix(namespace, version) + "profile.json")


def models_prefix(namespace: str) -> str:
    return f"{tenant_prefix(namespace)}models/"


def model_key(namespace: str, model: str, sha256: str) -> str:
    return f"{models_prefix(namespace)}{model}/{sha256}{MODEL_SUFFIX}"


def report_key(namespace: str, model: str, sha256: str) -> str:
    """A model report, beside the model's artifacts and addressed by its own content: two
    runs that train identical bytes still write two reports (their runs differ), and
    neither overwrites the other."""
    return f"{models_prefix(namespace)}{model}/reports/{sha256}.html"


def dataset_result_key(namespace: str, dataset: str, job: str) -> str:
    return f"{tenant_prefix(namespace)}results/datasets/{dataset}/{job}.json"


def run_result_key(namespace: str, run: str, uid: str) -> str:
    return f"{tenant_prefix(namespace)}results/trainingruns/{run}/{uid}.json"


def capture_prefix(namespace: str, deployment: str) -> str:
    """Where a Deployment's servers write captured requests."""
    return f"{tenant_prefix(namespace)}captures/{deployment}/"


def feedback_prefix(namespace: str, deployment: str) -> str:
    """Where a Deployment's servers write ground truth sent for its requests."""
    return f"{tenant_prefix(namespace)}feedback/{deployment}/"


def run_trials_prefix(namespace: str, run: str, uid: str) -> str:
    return f"{tenant_prefix(namespace)}results/trainingruns/{run}/{uid}/"


def run_trials_key(prefix: str) -> str:
    return f"{prefix}trials.parquet"


def run_shard_key(prefix: str, index: int) -> str:
    return f"{prefix}shards/{index}.parquet"


def model_artifact_owner(uri: str, bucket: str) -> str | None:
    """The namespace whose model space holds ``uri`` (None: not a KubeML model key in
    ``bucket``). Keys with ``..`` or empty segments are nobody's: S3 keys are plain
    strings, but a path-like key could read as another namespace's to a human."""
    try:
        b, key = parse_uri(uri)
    except ValueError:
        return None
    parts = key.split("/")
    if b != bucket or len(parts) < 5 or parts[0] != ROOT or parts[2] != "models":
        return None
    if any(p in ("", ".", "..") for p in parts):
        return None
    return parts[1]


def report_owner(uri: str, bucket: str) -> str | None:
    """The namespace whose model space holds the model report ``uri`` (None: not a
    report key of ``report_key``'s shape in ``bucket``)."""
    owner = model_artifact_owner(uri, bucket)
    parts = parse_uri(uri)[1].split("/") if owner else []
    if len(parts) != 6 or parts[4] != "reports" or not parts[5].endswith(".html"):
        return None
    return owner
