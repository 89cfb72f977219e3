"""The checks of Pod Security "restricted" that a pod spec can fail on its own.

The integration tests get the real verdict from the apiserver's PodSecurity
admission (test namespaces enforce `restricted`); this catches regressions in
unit tests, before any cluster exists.
"""

from __future__ import annotations

from typing import Any


def violations(pod_spec: dict[str, Any]) -> list[str]:
    out: list[str] = []
    psc = pod_spec.get("securityContext") or {}
    if pod_spec.get("hostNetwork") or pod_spec.get("hostPID") or pod_spec.get("hostIPC"):
        out.append("host namespaces")
    for vol in pod_spec.get("volumes") or []:
        allowed = {
            "name",
            "emptyDir",
            "configMap",
            "secret",
            "projected",
            "downwardAPI",
            "persistentVolumeClaim",
            "ephemeral",
            "csi",
        }
        if set(vol) - allowed:
            out.append(f"volume {vol['name']} uses {sorted(set(vol) - allowed)}")
    for c in (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or []):
        csc = c.get("securityContext") or {}
        name = c["name"]
        if csc.get("privileged"):
            out.append(f"{name}: privileged")
        if csc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation != false")
        if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
            out.append(f"{name}: capabilities.drop lacks ALL")
        added = set((csc.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            out.append(f"{name}: adds capabilities {sorted(added)}")
        non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            out.append(f"{name}: runAsNonRoot != true")
        if csc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile {seccomp}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"{name}: hostPort")
    return out
