"""Pure translation of a pod's container into a local process plan.

Nothing here talks to the cluster or the file system: the caller fetches the Secrets and
ConfigMaps that :func:`referenced_objects` names, passes them in as :class:`Lookups`, and
gets back argv, environment, working directory and identity.

Path rewriting. Processes see the host file system, not the container's, so a volume
mounted at ``mountPath`` really lives in a directory under the agent's state. Each
container therefore gets a :class:`PathRewriter` built from its volume mounts (plus its
``workingDir``): in ``command``, ``args`` and every user-supplied env value (literal
``value``, ConfigMap/Secret values and ``envFrom``), an occurrence of a mount path is
replaced by the real directory when it stands as a whole path prefix — preceded by start of
text or a character that cannot be part of a path (space, ``=``, ``:``, quotes, ...) and
followed by ``/``, end of text or such a character. ``/data`` in ``--out=/data/x`` becomes
``<volume dir>/x``; ``/data`` in ``/mnt/data``, ``/database`` or ``http://h/data`` stays.
The longest mount path wins, and rewritten text is never rewritten again. Rewriting happens
before ``$(VAR)`` expansion, so values of the agent's own variables (real host paths) are
never touched. A ``workingDir`` outside every mount maps to ``<pod root>/<workingDir>``.
Paths a program builds at run time are not rewritten (in-cluster config's fixed
``/var/run/secrets/...`` path included); use the KUBECONFIG the agent provides.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubeml.quantity import ceil_divide, memory_bytes, value
from kubeml_local.agent.expansion import expand, mapping_for

if TYPE_CHECKING:
    from kubeml_local.agent.imageplan import Sandbox

Json = dict[str, Any]

# What Kubernetes runs as when runAsNonRoot asks for a non-root user but names none; we
# cannot read an image's USER, so we pick "nobody".
NOBODY = 65534


class ConfigError(Exception):
    """The container cannot be started as specified (kubelet: CreateContainerConfigError)."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Lookups:
    """Secrets and ConfigMaps of the pod's namespace; None means "fetched, does not exist".

    Values are bytes (Secret data decoded from base64; ConfigMap ``data`` encoded as UTF-8
    and ``binaryData`` decoded)."""

    secrets: Mapping[str, Mapping[str, bytes] | None] = field(default_factory=dict)
    config_maps: Mapping[str, Mapping[str, bytes] | None] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> Mapping[str, bytes] | None:
        table = self.secrets if kind == "secret" else self.config_maps
        return table.get(name)


@dataclass(frozen=True)
class Refs:
    secrets: frozenset[str]
    config_maps: frozenset[str]


@dataclass(frozen=True)
class PodRuntime:
    """What the agent decided for this pod: its addresses and the node's allocatable."""

    pod_ip: str
    host_ip: str
    node_name: str
    allocatable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Identity:
    uid: int | None
    gid: int | None
    groups: tuple[int, ...] = ()


@dataclass(frozen=True)
class ProcessPlan:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    identity: Identity
    memory_limit: int | None
    rewriter: PathRewriter
    # Directories the container expects to exist (subPath targets, workingDir).
    make_dirs: tuple[str, ...] = ()
    # Set when the container runs inside its image (imageplan.py): the launcher's orders.
    sandbox: Sandbox | None = None

    def exec_argv(self, command: Iterable[str]) -> tuple[str, ...]:
        """argv of an exec probe, with the same rewriting and expansion as the container."""
        lookup = mapping_for(self.env)
        return tuple(expand(self.rewriter(str(a)), lookup) for a in command)


# -- small accessors ------------------------------------------------------------------------


def spec(pod: Mapping[str, Any]) -> Json:
    return pod.get("spec") or {}


def meta(pod: Mapping[str, Any]) -> Json:
    return pod.get("metadata") or {}


def all_containers(pod: Mapping[str, Any]) -> list[Json]:
    s = spec(pod)
    return list(s.get("initContainers") or []) + list(s.get("containers") or [])


def is_sidecar(container: Mapping[str, Any]) -> bool:
    """An init container with restartPolicy Always keeps running beside the main ones."""
    return container.get("restartPolicy") == "Always"


def decode(value: bytes) -> str:
    # surrogateescape keeps arbitrary Secret bytes intact on their way into execve().
    return value.decode("utf-8", errors="surrogateescape")


# -- referenced objects ---------------------------------------------------------------------


def referenced_objects(pod: Mapping[str, Any]) -> Refs:
    secrets: set[str] = set()
    config_maps: set[str] = set()
    for c in all_containers(pod):
        for src in c.get("envFrom") or []:
            if src.get("secretRef"):
                secrets.add(src["secretRef"]["name"])
            if src.get("configMapRef"):
                config_maps.add(src["configMapRef"]["name"])
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if vf.get("secretKeyRef"):
                secrets.add(vf["secretKeyRef"]["name"])
            if vf.get("configMapKeyRef"):
                config_maps.add(vf["configMapKeyRef"]["name"])
    for v in spec(pod).get("volumes") or []:
        if v.get("secret"):
            secrets.add(v["secret"]["secretName"])
        if v.get("configMap"):
            config_maps.add(v["configMap"]["name"])
        for src in (v.get("projected") or {}).get("sources") or []:
            if src.get("secret"):
                secrets.add(src["secret"]["name"])
            if src.get("configMap"):
                config_maps.add(src["configMap"]["name"])
    return Refs(frozenset(secrets), frozenset(config_maps))


# -- downward API ---------------------------------------------------------------------------


def format_map(values: Mapping[str, str]) -> str:
    """The downward API's rendering of all labels/annotations: ``key="value"`` lines."""
    return "".join(f"{k}={json.dumps(values[k], ensure_ascii=False)}\n" for k in sorted(values))


_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


def field_value(pod: Mapping[str, Any], path: str, rt: PodRuntime) -> str:
    m, s = meta(pod), spec(pod)
    simple: dict[str, Callable[[], str]] = {
        "metadata.name": lambda: str(m.get("name", "")),
        "metadata.namespace": lambda: str(m.get("namespace", "")),
        "metadata.uid": lambda: str(m.get("uid", "")),
        "spec.nodeName": lambda: str(s.get("nodeName") or rt.node_name),
        "spec.serviceAccountName": lambda: str(s.get("serviceAccountName") or "default"),
        "status.hostIP": lambda: rt.host_ip,
        "status.hostIPs": lambda: rt.host_ip,
        "status.podIP": lambda: rt.pod_ip,
        "status.podIPs": lambda: rt.pod_ip,
        "metadata.labels": lambda: format_map(m.get("labels") or {}),
        "metadata.annotations": lambda: format_map(m.get("annotations") or {}),
    }
    if path in simple:
        return simple[path]()
    sub = _SUBSCRIPT.match(path)
    if sub:
        return str((m.get(sub[1]) or {}).get(sub[2], ""))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def resource_value(
    container: Mapping[str, Any],
    resource: str,
    divisor: str | int | None,
    allocatable: Mapping[str, str],
) -> str:
    """resourceFieldRef: limits default to the node's allocatable, requests to 0."""
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise ConfigError(f"unsupported resourceFieldRef resource {resource!r}")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(name)  # the apiserver's defaulting
    if value is None:
        value = allocatable.get(name, "0") if kind == "limits" else "0"
    return str(ceil_divide(value, divisor if divisor not in (None, "") else 1))


# -- path rewriting -------------------------------------------------------------------------

_PATH_CHAR = r"[\w.\-]"


@dataclass(frozen=True)
class PathRewriter:
    """Replaces container paths (mount points) by host directories; see module docstring."""

    mounts: tuple[tuple[str, str], ...] = ()

    @classmethod
    def build(cls, mounts: Iterable[tuple[str, str]]) -> PathRewriter:
        clean: dict[str, str] = {}
        for container_path, host_path in mounts:
            norm = posixpath.normpath(container_path)
            if norm != "/" and norm.startswith("/") and norm not in clean:
                clean[norm] = host_path
        ordered = sorted(clean.items(), key=lambda kv: len(kv[0]), reverse=True)
        return cls(tuple(ordered))

    def __call__(self, text: str) -> str:
        if not self.mounts or not text:
            return text
        table = dict(self.mounts)
        return self._pattern().sub(lambda mt: table[mt.group(1)], text)

    def _pattern(self) -> re.Pattern[str]:
        alternatives = "|".join(re.escape(p) for p, _ in self.mounts)
        return re.compile(rf"(?<![\w.\-/])({alternatives})(?=/|$|[^\w.\-/])")

    def resolve(self, path: str) -> str | None:
        """Host path for an absolute container path under one of the mounts, else None."""
        norm = posixpath.normpath(path)
        for container_path, host_path in self.mounts:
            if norm == container_path:
                return host_path
            if norm.startswith(container_path + "/"):
                return host_path + norm[len(container_path) :]
        return None


def _safe_relative(path: str, what: str) -> str:
    norm = posixpath.normpath(path)
    if path.startswith("/") or norm == ".." or norm.startswith("../"):
        raise ConfigError(f"{what} {path!r} must be a relative path without '..'")
    return norm


def static_env(
    pod: Mapping[str, Any], container: Mapping[str, Any], rt: PodRuntime
) -> dict[str, str]:
    """The container's literal and fieldRef variables: what ``subPathExpr`` may use here
    (the kubelet expands it with the whole env; this covers its documented use,
    ``$(POD_NAME)``), known before Secrets, ConfigMaps and path rewriting."""
    return {
        e["name"]: (
            field_value(pod, e["valueFrom"]["fieldRef"]["fieldPath"], rt)
            if (e.get("valueFrom") or {}).get("fieldRef")
            else str(e.get("value", ""))
        )
        for e in container.get("env") or []
        if not e.get("valueFrom") or e["valueFrom"].get("fieldRef")
    }


def container_mounts(
    container: Mapping[str, Any], volume_dirs: Mapping[str, str], env: Mapping[str, str]
) -> list[tuple[str, str]]:
    mounts = []
    for vm in container.get("volumeMounts") or []:
        host = volume_dirs.get(vm["name"])
        if host is None:
            raise ConfigError(
                f"volume {vm['name']!r} is not defined in the pod", "CreateContainerError"
            )
        sub = vm.get("subPath") or ""
        if vm.get("subPathExpr"):
            sub = expand(vm["subPathExpr"], mapping_for(env))
        if sub:
            host = posixpath.join(host, _safe_relative(sub, "subPath"))
        mounts.append((vm["mountPath"], host))
    return mounts


# -- environment ----------------------------------------------------------------------------


def _key_ref(lookups: Lookups, kind: str, ref: Mapping[str, Any], namespace: str) -> bytes | None:
    name, key, optional = ref.get("name", ""), ref["key"], bool(ref.get("optional"))
    label = "secret" if kind == "secret" else "configmap"
    data = lookups.get(kind, name)
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{label} "{name}" not found')
    if key not in data:
        if optional:
            return None
        title = "Secret" if kind == "secret" else "ConfigMap"
        raise ConfigError(f"couldn't find key {key} in {title} {namespace}/{name}")
    return data[key]


def container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    rt: PodRuntime,
    lookups: Lookups,
    base: Mapping[str, str],
    rewrite: Callable[[str], str],
) -> dict[str, str]:
    """The container's own variables in kubelet order: envFrom, then env (later wins).

    ``base`` (the agent's variables) is only consulted for ``$(VAR)`` expansion; the
    caller layers the result over it."""
    namespace = str(meta(pod).get("namespace", ""))
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix") or ""
        kind, ref = (
            ("secret", src.get("secretRef"))
            if src.get("secretRef")
            else ("configMap", src.get("configMapRef"))
        )
        if not ref:
            continue
        data = lookups.get(kind, ref.get("name", ""))
        if data is None:
            if ref.get("optional"):
                continue
            label = "secret" if kind == "secret" else "configmap"
            raise ConfigError(f'{label} "{ref.get("name", "")}" not found')
        for key in sorted(data):
            name = prefix + key
            if name and "=" not in name:  # the kubelet skips keys that are no valid name
                env[name] = rewrite(decode(data[key]))
    for item in container.get("env") or []:
        name = item["name"]
        source = item.get("valueFrom")
        if not source:
            env[name] = expand(rewrite(str(item.get("value", ""))), mapping_for(env, base))
            continue
        value = _value_from(pod, container, source, rt, lookups, namespace, rewrite)
        if value is not None:
            env[name] = value
    return env


def _value_from(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    source: Mapping[str, Any],
    rt: PodRuntime,
    lookups: Lookups,
    namespace: str,
    rewrite: Callable[[str], str],
) -> str | None:
    if source.get("fieldRef"):
        return field_value(pod, source["fieldRef"]["fieldPath"], rt)
    if source.get("resourceFieldRef"):
        ref = source["resourceFieldRef"]
        target = container
        if ref.get("containerName"):
            named = [c for c in all_containers(pod) if c.get("name") == ref["containerName"]]
            if not named:
                raise ConfigError(
                    f"resourceFieldRef names unknown container {ref['containerName']!r}"
                )
            target = named[0]
        return resource_value(target, ref["resource"], ref.get("divisor"), rt.allocatable)
    for kind, key in (("secret", "secretKeyRef"), ("configMap", "configMapKeyRef")):
        if source.get(key):
            raw = _key_ref(lookups, kind, source[key], namespace)
            return None if raw is None else rewrite(decode(raw))
    raise ConfigError(f"unsupported valueFrom {sorted(source)}")


# -- identity -------------------------------------------------------------------------------


def security_value(pod: Mapping[str, Any], container: Mapping[str, Any], key: str) -> Any:
    """A securityContext field: the container's, else the pod's."""
    csc = container.get("securityContext") or {}
    if csc.get(key) is not None:
        return csc[key]
    return (spec(pod).get("securityContext") or {}).get(key)


def identity(pod: Mapping[str, Any], container: Mapping[str, Any], switch_users: bool) -> Identity:
    """Who the process runs as.

    With ``switch_users`` (the agent is root and every uid can reach the Python
    installation, see agent.py) the process drops to runAsUser/runAsGroup (the container's
    securityContext over the pod's), with supplementalGroups and fsGroup as extra groups;
    without runAsGroup the group is the uid's number (runtimes would take the image's
    group, often 0); runAsNonRoot without runAsUser runs as nobody. Otherwise everything
    runs as the agent's own user. runAsNonRoot with runAsUser 0 is refused either way."""
    psc = spec(pod).get("securityContext") or {}

    def pick(key: str) -> Any:
        return security_value(pod, container, key)

    uid, gid, non_root = pick("runAsUser"), pick("runAsGroup"), pick("runAsNonRoot")
    if non_root and uid == 0:
        raise ConfigError("container's runAsUser breaks non-root policy")
    if not switch_users:
        return Identity(None, None, ())
    if uid is None and non_root:
        uid = NOBODY
    if uid is None:
        return Identity(None, None, ())
    groups = [int(g) for g in psc.get("supplementalGroups") or []]
    if psc.get("fsGroup") is not None:
        groups.append(int(psc["fsGroup"]))
    return Identity(int(uid), int(gid if gid is not None else uid), tuple(dict.fromkeys(groups)))


def memory_limit(container: Mapping[str, Any]) -> int | None:
    limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    return memory_bytes(limit) if limit is not None else None


def cpu_cores(quantity: str | int | float) -> float:
    return float(value(quantity))


# -- the plan -------------------------------------------------------------------------------


def plan_process(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    rt: PodRuntime,
    lookups: Lookups,
    base_env: Mapping[str, str],
    pod_root: str,
    volume_dirs: Mapping[str, str],
    switch_users: bool,
) -> ProcessPlan:
    who = identity(pod, container, switch_users)
    # Mounts first (subPathExpr may use env, but env values need the rewriter): the kubelet
    # also expands subPathExpr with the container env; we use literal and fieldRef values
    # only, which covers its documented use ($(POD_NAME)).
    mounts = container_mounts(container, volume_dirs, static_env(pod, container, rt))
    rewriter = PathRewriter.build(mounts)
    make_dirs = [host for _, host in mounts if host not in volume_dirs.values()]

    working_dir = container.get("workingDir") or ""
    if not working_dir or posixpath.normpath(working_dir) == "/":
        cwd = pod_root
    else:
        if not working_dir.startswith("/"):
            raise ConfigError(
                f"workingDir {working_dir!r} must be absolute", "CreateContainerError"
            )
        cwd = rewriter.resolve(working_dir) or posixpath.join(
            pod_root, posixpath.normpath(working_dir).lstrip("/")
        )
        if rewriter.resolve(working_dir) is None:
            rewriter = PathRewriter.build([*mounts, (working_dir, cwd)])
        make_dirs.append(cwd)

    own = container_env(pod, container, rt, lookups, base_env, rewriter)
    env = {**base_env, **own}
    lookup = mapping_for(own, base_env)
    command = [expand(rewriter(str(a)), lookup) for a in container.get("command") or []]
    args = [expand(rewriter(str(a)), lookup) for a in container.get("args") or []]
    argv = tuple(command + args)
    if not argv:
        raise ConfigError(
            "no command: images are not run here, so the container needs `command` (or `args`)",
            "CreateContainerError",
        )
    return ProcessPlan(
        argv=argv,
        env=env,
        cwd=cwd,
        identity=who,
        memory_limit=memory_limit(container),
        rewriter=rewriter,
        make_dirs=tuple(dict.fromkeys(make_dirs)),
    )


def container_port(container: Mapping[str, Any], port: int | str) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"port {port!r} is not a named port of container {container.get('name')!r}")
