"""Pod-spec pieces shared by every workload the operator creates."""

from __future__ import annotations

from typing import Any

from ..api.base import ResourceRequirements
from ..settings import Settings
from . import jobs

# Pod Security "restricted": non-root, no privilege escalation, every
# capability dropped, the runtime's default seccomp profile.
RUN_AS_USER = 65532


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def s3_env(settings: Settings) -> list[dict[str, Any]]:
    """Where the artifact store is, and credentials by secretKeyRef only."""
    env: list[dict[str, Any]] = [
        {"name": "KUBEML_BUCKET", "value": settings.bucket},
        {"name": "AWS_REGION", "value": settings.s3_region},
        {"name": "KUBEML_S3_VERIFY", "value": "true" if settings.s3_verify else "false"},
    ]
    if settings.s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": settings.s3_endpoint})
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.append(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": settings.s3_secret, "key": key}}}
        )
    return env


DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}


def resources(spec: ResourceRequirements | None) -> dict[str, Any]:
    if spec is None:
        return {k: dict(v) for k, v in DEFAULT_RESOURCES.items()}
    out: dict[str, Any] = {}
    if spec.requests:
        out["requests"] = {k: str(v) for k, v in spec.requests.items()}
    if spec.limits:
        out["limits"] = {k: str(v) for k, v in spec.limits.items()}
    return out


def memory_limit(res: dict[str, Any]) -> str | None:
    limit = (res.get("limits") or {}).get("memory")
    return str(limit) if limit is not None else None


def owner_reference(body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        # blockOwnerDeletion needs delete permission on the owner; foreground
        # deletion is not something we rely on.
        "blockOwnerDeletion": False,
    }


def runtime_job(
    owner: dict[str, Any],
    *,
    name: str,
    labels: dict[str, str],
    container: str,
    command: list[str],
    env: list[dict[str, Any]],
    resources: dict[str, Any],
    backoff_limit: int,
    deadline: int,
    settings: Settings,
    indexed: int | None = None,
) -> dict[str, Any]:
    """A hardened, run-once Job running one of our runtime programs.

    Retries and deadlines are the Job's own fields; the podFailurePolicy fails it
    at once on a bad input or an OOM kill. ``indexed``: that many pods at once, each
    with its own $JOB_COMPLETION_INDEX, each index retried on its own.
    """
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": deadline,
            "podFailurePolicy": jobs.pod_failure_policy(container),
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "containers": [
                        {
                            "name": container,
                            "image": settings.runtime_image,
                            "imagePullPolicy": settings.image_pull_policy,
                            "command": command,
                            "env": env,
                            "resources": resources,
                            "securityContext": container_security_context(),
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    if indexed is not None:
        spec = job["spec"]
        # backoffLimitPerIndex: one flaky pod retries its own shard without spending
        # the others' retries (backoffLimit then defaults to unlimited).
        del spec["backoffLimit"]
        spec.update(
            completionMode="Indexed",
            completions=indexed,
            parallelism=indexed,
            backoffLimitPerIndex=backoff_limit,
        )
    return job
