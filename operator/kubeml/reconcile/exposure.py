"""Publishing a model outside the cluster: an HTTPRoute (Gateway API) and an Ingress.

Both send the model's own paths, unchanged, to the Deployment's stable Service
(port http): the server answers them as they are, so no rewrite is needed and
Deployments of different models can share a host. Health and /metrics are not
routed: they are for the cluster, not for clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import labels
from ..api.deployment import Exposure, GatewayExposure, IngressExposure
from ..conditions import remove_condition
from . import pods, server_objects
from .outcome import Ref
from .step import Step

HTTPROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute")
INGRESS = ("networking.k8s.io/v1", "Ingress")
GATEWAY_GROUP_VERSION = HTTPROUTE[0]
HTTPROUTE_CRD = "httproutes.gateway.networking.k8s.io"
EXPOSED = "Exposed"
SERVICE_PORT = 80  # the stable Service's port named http


def model_paths(model: str) -> list[tuple[str, str]]:
    """(match type, path) of everything a client of the model calls. Prefix matches
    are by whole path segments in both APIs, so the v1 predict path, whose last
    segment is ``MODEL:predict``, needs an exact match of its own."""
    return [
        ("PathPrefix", f"/v2/models/{model}"),
        ("Exact", f"/v1/models/{model}"),
        ("Exact", f"/v1/models/{model}:predict"),
    ]


def _meta(owner: Mapping[str, Any]) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "labels": {
            **server_objects.selector(meta["name"]),
            labels.MANAGED_BY: labels.MANAGER,
        },
        "ownerReferences": [pods.owner_reference(dict(owner))],
    }


def http_route(owner: Mapping[str, Any], model: str, gw: GatewayExposure) -> dict[str, Any]:
    """The HTTPRoute (gateway.networking.k8s.io/v1) attaching the model to Gateways."""
    meta = _meta(owner)
    parents = []
    for ref in gw.parent_refs:
        parent: dict[str, Any] = {"name": ref.name}
        if ref.namespace:
            parent["namespace"] = ref.namespace
        if ref.section_name:
            parent["sectionName"] = ref.section_name
        parents.append(parent)
    spec: dict[str, Any] = {
        "parentRefs": parents,
        "rules": [
            {
                "matches": [
                    {"path": {"type": kind, "value": path}} for kind, path in model_paths(model)
                ],
                "backendRefs": [{"name": meta["name"], "port": SERVICE_PORT}],
            }
        ],
    }
    if gw.hostnames:
        spec["hostnames"] = list(gw.hostnames)
    return {"apiVersion": HTTPROUTE[0], "kind": HTTPROUTE[1], "metadata": meta, "spec": spec}


def ingress(owner: Mapping[str, Any], model: str, ing: IngressExposure) -> dict[str, Any]:
    """The Ingress (networking.k8s.io/v1) for one host."""
    meta = _meta(owner)
    if ing.annotations:
        meta["annotations"] = dict(ing.annotations)
    backend = {"service": {"name": meta["name"], "port": {"name": "http"}}}
    types = {"PathPrefix": "Prefix", "Exact": "Exact"}
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": ing.host,
                "http": {
                    "paths": [
                        {"path": path, "pathType": types[kind], "backend": backend}
                        for kind, path in model_paths(model)
                    ]
                },
            }
        ]
    }
    if ing.class_name:
        spec["ingressClassName"] = ing.class_name
    if ing.tls_secret_name:
        spec["tls"] = [{"hosts": [ing.host], "secretName": ing.tls_secret_name}]
    return {"apiVersion": INGRESS[0], "kind": INGRESS[1], "metadata": meta, "spec": spec}


def route_parents(route: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Gateways' verdicts on an HTTPRoute (its status.parents), for our status."""
    ns = route["metadata"].get("namespace", "")
    out = []
    for p in ((route.get("status") or {}).get("parents") or [])[:32]:
        ref = p.get("parentRef") or {}
        where = f"{ref.get('namespace') or ns}/{ref.get('name', '')}"
        if ref.get("sectionName"):
            where += f"/{ref['sectionName']}"
        conditions = [
            {k: c[k] for k in ("type", "status", "reason", "message") if c.get(k) is not None}
            for c in (p.get("conditions") or [])[:8]
        ]
        entry: dict[str, Any] = {"parent": where, "conditions": conditions}
        if p.get("controllerName"):
            entry["controller"] = p["controllerName"]
        out.append(entry)
    return out


def ingress_addresses(obj: Mapping[str, Any]) -> list[str]:
    lb = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [
        str(a.get("ip") or a.get("hostname")) for a in lb[:16] if a.get("ip") or a.get("hostname")
    ]


@dataclass(frozen=True)
class Observed:
    """What the decision needs to know about exposure."""

    gateway_api: bool  # the HTTPRoute kind is served by the apiserver
    route: Mapping[str, Any] | None = None  # our HTTPRoute, as last read
    ingress: Mapping[str, Any] | None = None  # our Ingress, as last read


@dataclass
class Plan:
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[Ref] = field(default_factory=list)
    # Seconds until the route should be looked at again (the API may appear, a
    # Gateway may answer); None: nothing to wait for.
    look_again: float | None = None


def decide(
    step: Step, model: str, exposure: Exposure | None, seen: Observed, poll_seconds: float
) -> Plan:
    """Objects to apply and delete, and status.exposure and the Exposed condition."""
    body = step.body
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    plan = Plan()
    if exposure is None:
        _withdraw(plan, seen, body)
        step.status.pop("exposure", None)
        step.status["conditions"] = remove_condition(step.status.get("conditions"), EXPOSED)
        return plan
    status: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    published: list[str] = []
    taken = [
        f"{kind} {ns}/{name}"
        for kind, obj in (("HTTPRoute", seen.route), ("Ingress", seen.ingress))
        if obj is not None and not _owned(obj, body)
    ]
    if taken:
        # Someone else's object under our name is neither taken over nor deleted.
        message = (
            f"spec.exposure: {' and '.join(taken)} already exist(s) and belong(s) to "
            "something else; left alone (rename the Deployment or that object)"
        )
        step.cond(EXPOSED, "False", "NameTaken", message)
        step.status["exposure"] = {"message": message}
        return plan
    if exposure.gateway is None:
        if seen.route is not None:  # ours (checked above)
            plan.delete.append(Ref(*HTTPROUTE, ns, name))
    elif not seen.gateway_api:
        problems.append(
            (
                "GatewayAPINotInstalled",
                f"spec.exposure.gateway: no HTTPRoute for {ns}/{name}: the Gateway API is "
                f"not installed (CRD {HTTPROUTE_CRD} not found); looking again every "
                f"{poll_seconds:g}s",
            )
        )
        plan.look_again = poll_seconds
    else:
        plan.apply.append(http_route(body, model, exposure.gateway))
        parents = route_parents(seen.route) if seen.route is not None else []
        status["httpRoute"] = {
            "name": name,
            "hostnames": list(exposure.gateway.hostnames or []),
            "parents": parents,
        }
        refused = _refusals(parents)
        problems += refused
        if refused or _accepted_count(parents) < len(exposure.gateway.parent_refs):
            plan.look_again = poll_seconds  # a Gateway has yet to accept it
        published.append(f"HTTPRoute {name} ({_accepted(parents, exposure.gateway)})")
    if exposure.ingress is None:
        if seen.ingress is not None:
            plan.delete.append(Ref(*INGRESS, ns, name))
    else:
        plan.apply.append(ingress(body, model, exposure.ingress))
        entry: dict[str, Any] = {"name": name, "hostnames": [exposure.ingress.host]}
        if seen.ingress is not None:
            entry["addresses"] = ingress_addresses(seen.ingress)
        status["ingress"] = entry
        published.append(f"Ingress {name} (host {exposure.ingress.host})")
    if problems:
        status["message"] = "; ".join(m for _, m in problems)
        step.cond(EXPOSED, "False", problems[0][0], status["message"])
    else:
        step.cond(EXPOSED, "True", "Published", "published by " + ", ".join(published))
    step.status["exposure"] = status
    return plan


def _owned(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    uid = owner["metadata"].get("uid")
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid for r in refs)


def _withdraw(plan: Plan, seen: Observed, body: Mapping[str, Any]) -> None:
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    if seen.route is not None and _owned(seen.route, body):
        plan.delete.append(Ref(*HTTPROUTE, ns, name))
    if seen.ingress is not None and _owned(seen.ingress, body):
        plan.delete.append(Ref(*INGRESS, ns, name))


def _refusals(parents: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for p in parents:
        for c in p["conditions"]:
            if c.get("type") in ("Accepted", "ResolvedRefs") and c.get("status") == "False":
                reason = "RouteNotAccepted" if c["type"] == "Accepted" else "RouteRefsUnresolved"
                out.append(
                    (
                        reason,
                        f"gateway {p['parent']}: {c['type']}=False "
                        f"({c.get('reason', '')}: {c.get('message', '')})",
                    )
                )
    return out


def _accepted_count(parents: list[dict[str, Any]]) -> int:
    return sum(
        1
        for p in parents
        if any(c.get("type") == "Accepted" and c.get("status") == "True" for c in p["conditions"])
    )


def _accepted(parents: list[dict[str, Any]], gw: GatewayExposure) -> str:
    return f"accepted by {_accepted_count(parents)} of {len(gw.parent_refs)} gateway(s)"


def accepted_by_all(route: Mapping[str, Any] | None) -> bool:
    """Whether every Gateway the route names has accepted it (nothing left to wait for)."""
    if route is None:
        return False
    wanted = len((route.get("spec") or {}).get("parentRefs") or [])
    parents = route_parents(route)
    return bool(parents) and _accepted_count(parents) >= wanted
