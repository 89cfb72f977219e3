"""Pod volumes as directories: what goes into each (pure) and writing it out.

emptyDir is an empty world-writable directory; configMap, secret, downwardAPI and projected
volumes are rendered to files with their items, modes and ``optional`` semantics;
persistentVolumeClaim maps to one directory per claim under the state dir, shared by every
pod that mounts it (a stand-in for a real volume); other types (hostPath, csi, ephemeral,
image, ...) degrade to an empty directory with a warning. Secret/ConfigMap volumes are not
refreshed while the pod runs; projected service-account tokens are (see the worker).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeml_local.agent.podspec import (
    ConfigError,
    Lookups,
    PodRuntime,
    all_containers,
    field_value,
    meta,
    resource_value,
)

DEFAULT_MODE = 0o644
SUPPORTED = ("emptyDir", "configMap", "secret", "downwardAPI", "projected", "persistentVolumeClaim")


@dataclass(frozen=True)
class FileSpec:
    data: bytes
    mode: int


def volume_kind(volume: Mapping[str, Any]) -> str:
    for kind in SUPPORTED:
        if volume.get(kind) is not None:
            return kind
    others = [k for k in volume if k != "name"]
    return others[0] if others else "emptyDir"


def token_audiences(pod: Mapping[str, Any]) -> dict[str, int]:
    """Audience ("" = the apiserver's own) -> expirationSeconds of projected token sources."""
    wanted: dict[str, int] = {}
    for v in (pod.get("spec") or {}).get("volumes") or []:
        for src in (v.get("projected") or {}).get("sources") or []:
            sat = src.get("serviceAccountToken")
            if sat is not None:
                aud = sat.get("audience") or ""
                wanted[aud] = max(wanted.get(aud, 0), int(sat.get("expirationSeconds") or 3607))
    return wanted


def _check_path(path: str) -> str:
    norm = posixpath.normpath(path)
    if path.startswith("/") or norm.startswith("..") or norm in ("", "."):
        raise ConfigError(f"volume item path {path!r} must be relative without '..'")
    return norm


def _key_files(
    kind: str,
    name: str,
    items: list[Mapping[str, Any]] | None,
    optional: bool,
    mode: int,
    lookups: Lookups,
) -> dict[str, FileSpec]:
    label = "secret" if kind == "secret" else "configmap"
    data = lookups.get(kind, name)
    if data is None:
        if optional:
            return {}
        raise ConfigError(f'{label} "{name}" not found', "FailedMount")
    if not items:
        return {key: FileSpec(value, mode) for key, value in data.items()}
    files = {}
    for item in items:
        key = item["key"]
        if key not in data:
            if optional:
                continue
            raise ConfigError(f'{label} "{name}" has no key {key!r}', "FailedMount")
        files[_check_path(item["path"])] = FileSpec(data[key], int(item.get("mode", mode)))
    return files


def _downward_files(
    pod: Mapping[str, Any], items: list[Mapping[str, Any]], mode: int, rt: PodRuntime
) -> dict[str, FileSpec]:
    files = {}
    for item in items:
        if item.get("fieldRef"):
            value = field_value(pod, item["fieldRef"]["fieldPath"], rt)
        elif item.get("resourceFieldRef"):
            ref = item["resourceFieldRef"]
            named = [c for c in all_containers(pod) if c.get("name") == ref.get("containerName")]
            if not named:
                raise ConfigError(
                    f"resourceFieldRef names unknown container {ref.get('containerName')!r}"
                )
            value = resource_value(named[0], ref["resource"], ref.get("divisor"), rt.allocatable)
        else:
            continue
        files[_check_path(item["path"])] = FileSpec(value.encode(), int(item.get("mode", mode)))
    return files


def render_volume(
    volume: Mapping[str, Any],
    pod: Mapping[str, Any],
    rt: PodRuntime,
    lookups: Lookups,
    tokens: Mapping[str, str],
) -> dict[str, FileSpec]:
    """Files of a volume, relative path -> content; {} for an initially empty directory."""
    kind = volume_kind(volume)
    body = volume.get(kind) or {}
    mode = int(body.get("defaultMode", DEFAULT_MODE)) if isinstance(body, Mapping) else DEFAULT_MODE
    if kind == "configMap":
        return _key_files(
            "configMap", body["name"], body.get("items"), bool(body.get("optional")), mode, lookups
        )
    if kind == "secret":
        return _key_files(
            "secret",
            body["secretName"],
            body.get("items"),
            bool(body.get("optional")),
            mode,
            lookups,
        )
    if kind == "downwardAPI":
        return _downward_files(pod, body.get("items") or [], mode, rt)
    if kind != "projected":
        return {}
    files: dict[str, FileSpec] = {}
    for src in body.get("sources") or []:
        if src.get("configMap"):
            s = src["configMap"]
            files.update(
                _key_files(
                    "configMap", s["name"], s.get("items"), bool(s.get("optional")), mode, lookups
                )
            )
        elif src.get("secret"):
            s = src["secret"]
            files.update(
                _key_files(
                    "secret", s["name"], s.get("items"), bool(s.get("optional")), mode, lookups
                )
            )
        elif src.get("downwardAPI"):
            files.update(_downward_files(pod, src["downwardAPI"].get("items") or [], mode, rt))
        elif src.get("serviceAccountToken"):
            s = src["serviceAccountToken"]
            token = tokens.get(s.get("audience") or "")
            if token is None:
                raise ConfigError("service account token not available", "FailedMount")
            files[_check_path(s["path"])] = FileSpec(token.encode(), mode)
    return files


def namespace_of(pod: Mapping[str, Any]) -> str:
    return str(meta(pod).get("namespace", "default"))


# -- writing ------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    """Write via rename so a reader never sees half a token or config file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    if owner is not None:
        os.chown(tmp, *owner)
    os.chmod(tmp, mode)
    tmp.replace(path)


def write_files(
    directory: Path, files: Mapping[str, FileSpec], owner: tuple[int, int] | None
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for rel, spec in files.items():
        target = directory / rel
        for parent in reversed(target.relative_to(directory).parents[:-1]):
            (directory / parent).mkdir(exist_ok=True)
            os.chmod(directory / parent, 0o755)
        write_atomic(target, spec.data, spec.mode, owner)
