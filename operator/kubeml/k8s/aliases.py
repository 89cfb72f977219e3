"""Claiming an alias for a model version, as `kubeml promote` and tests do.

The claim is a conditional write (the resourceVersion it read): if the version
changed meanwhile (the operator moved an alias away from it, say), the claim is
made again on what is there now, so no concurrent change is overwritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from . import objects

API_VERSION = "kubeml.io/v1alpha1"
ATTEMPTS = 10


class ClaimError(Exception):
    pass


@dataclass(frozen=True)
class Claim:
    name: str  # the ModelVersion
    resource_version: str  # after the claim
    changed: bool  # False: it already claimed the alias


def claim(api: ApiClient, namespace: str, model: str, version: int, alias: str) -> Claim:
    for _ in range(ATTEMPTS):
        target = _find(api, namespace, model, version)
        aliases = list(target["spec"].get("aliases") or [])
        meta = target["metadata"]
        if alias in aliases:
            return Claim(meta["name"], meta["resourceVersion"], False)
        target.setdefault("apiVersion", API_VERSION)
        target.setdefault("kind", "ModelVersion")
        try:
            done = objects.merge_patch(
                api,
                target,
                {"spec": {"aliases": [*aliases, alias]}},
                resource_version=meta["resourceVersion"],
            )
        except ApiException as err:
            if err.status == 409:
                continue
            raise ClaimError(f"patching {meta['name']}: {err.status} {api_message(err)}") from err
        return Claim(meta["name"], done["metadata"]["resourceVersion"], True)
    raise ClaimError(f"{model} version {version} kept changing; alias {alias} not claimed")


def api_message(err: ApiException) -> str:
    """The apiserver's own message (e.g. the kubeml-promote policy naming the right a
    user lacks), else the HTTP reason."""
    try:
        body = json.loads(err.body or "")
    except (TypeError, ValueError):
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    return str(message) if message else str(err.reason)


def _find(api: ApiClient, namespace: str, model: str, version: int) -> dict[str, Any]:
    items = objects.list_(api, API_VERSION, "ModelVersion", namespace)
    for item in items:
        spec = item.get("spec") or {}
        if spec.get("model") == model and spec.get("version") == version:
            return item
    raise ClaimError(f"no version {version} of model {model} in namespace {namespace}")
