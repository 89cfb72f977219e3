"""One kubernetes ApiClient per process, from in-cluster config or KUBECONFIG."""

from __future__ import annotations

import functools
from pathlib import Path

from kubernetes import client, config

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
USER_AGENT = "kubeml-operator/0.1"
POOL_SIZE = 32


@functools.cache
def api_client(identity: str = "") -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    cfg = client.Configuration.get_default_copy()
    # Keep-alive connections for every worker at once (the default is 5 per core).
    cfg.connection_pool_maxsize = POOL_SIZE
    api = client.ApiClient(cfg)
    # Requests are attributable in the apiserver's audit log, replica by replica.
    api.user_agent = f"{USER_AGENT} ({identity})" if identity else USER_AGENT
    return api


def current_namespace() -> str:
    """The namespace kubectl would use: the kubeconfig context's, in a pod its own,
    else ``default``."""
    try:
        _, active = config.list_kube_config_contexts()
        namespace = (active or {}).get("context", {}).get("namespace")
        if namespace:
            return str(namespace)
    except (config.ConfigException, OSError):
        if SERVICE_ACCOUNT_NAMESPACE.exists():
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "default"


def batch() -> client.BatchV1Api:
    return client.BatchV1Api(api_client())


def core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


def custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())
