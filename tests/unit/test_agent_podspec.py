"""Translating a container into a process plan: env, expansion, paths, identity."""

from __future__ import annotations

from typing import Any

import pytest

from kubeml_local.agent.podspec import (
    NOBODY,
    ConfigError,
    Lookups,
    PathRewriter,
    PodRuntime,
    ProcessPlan,
    container_port,
    field_value,
    format_map,
    identity,
    plan_process,
    referenced_objects,
    resource_value,
)

RT = PodRuntime(
    pod_ip="127.1.0.7",
    host_ip="127.0.0.1",
    node_name="node-a",
    allocatable={"cpu": "2", "memory": "8Gi"},
)
LOOKUPS = Lookups(
    secrets={"creds": {"password": b"hunter2", "user": b"admin"}, "missing": None},
    config_maps={"settings": {"mode": b"fast", "path": b"/data/in"}},
)


def pod(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u-1",
            "labels": {"app": "x", "tier": "web"},
            "annotations": {"a": "1"},
        },
        "spec": {
            "containers": [container],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "serviceAccountName": "runner",
            **spec,
        },
    }


def plan(container: dict[str, Any], *, switch_users: bool = False, **spec: Any) -> ProcessPlan:
    p = pod({"name": "c", **container}, **spec)
    return plan_process(
        p,
        p["spec"]["containers"][0],
        rt=RT,
        lookups=LOOKUPS,
        base_env={"PATH": "/bin", "KUBEML_POD_IP": RT.pod_ip},
        pod_root="/run/pod",
        volume_dirs={"data": "/host/vol/data"},
        switch_users=switch_users,
    )


def test_env_sources_and_precedence() -> None:
    p = plan(
        {
            "command": ["run"],
            "envFrom": [
                {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                {"secretRef": {"name": "creds"}},
            ],
            "env": [
                {"name": "user", "value": "override"},
                {
                    "name": "PASS",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                },
                {
                    "name": "MODE",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}},
                },
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {
                    "name": "TIER",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}},
                },
                {
                    "name": "MEM",
                    "valueFrom": {
                        "resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}
                    },
                },
                {"name": "EMPTY", "value": ""},
            ],
        }
    )
    env = p.env
    assert env["CFG_mode"] == "fast"
    assert env["CFG_path"] == "/data/in"  # no volume mounted at /data in this container
    assert env["password"] == "hunter2"
    assert env["user"] == "override"
    assert env["PASS"] == "hunter2"
    assert env["MODE"] == "fast"
    assert env["POD"] == "p"
    assert env["IP"] == "127.1.0.7"
    assert env["SA"] == "runner"
    assert env["TIER"] == "web"
    assert env["MEM"] == "8192"  # no limit: node allocatable
    assert env["EMPTY"] == ""
    assert env["PATH"] == "/bin"  # the agent's base env stays underneath


def test_expansion_uses_earlier_vars_and_base_env() -> None:
    p = plan(
        {
            "command": ["serve", "--bind", "$(IP):$(PORT)", "--x=$$(LITERAL)", "$(UNDEFINED)"],
            "args": ["$(KUBEML_POD_IP)"],
            "env": [
                {"name": "PORT", "value": "8080"},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "URL", "value": "http://$(IP):$(PORT)/"},
                {"name": "LATER", "value": "$(AFTER)"},
                {"name": "AFTER", "value": "x"},
            ],
        }
    )
    assert p.argv == (
        "serve",
        "--bind",
        "127.1.0.7:8080",
        "--x=$(LITERAL)",
        "$(UNDEFINED)",
        "127.1.0.7",
    )
    assert p.env["URL"] == "http://127.1.0.7:8080/"
    assert p.env["LATER"] == "$(AFTER)"  # env only sees variables defined before it


def test_missing_refs() -> None:
    with pytest.raises(ConfigError, match='secret "missing" not found') as err:
        plan(
            {
                "command": ["x"],
                "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}
                ],
            }
        )
    assert err.value.reason == "CreateContainerConfigError"
    with pytest.raises(ConfigError, match="couldn't find key nope in ConfigMap ns/settings"):
        plan(
            {
                "command": ["x"],
                "env": [
                    {
                        "name": "A",
                        "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope"}},
                    }
                ],
            }
        )
    with pytest.raises(ConfigError, match='configmap "absent" not found'):
        plan({"command": ["x"], "envFrom": [{"configMapRef": {"name": "absent"}}]})


def test_optional_refs_are_skipped() -> None:
    p = plan(
        {
            "command": ["x"],
            "envFrom": [{"configMapRef": {"name": "absent", "optional": True}}],
            "env": [
                {
                    "name": "A",
                    "valueFrom": {
                        "secretKeyRef": {"name": "missing", "key": "k", "optional": True}
                    },
                },
                {
                    "name": "B",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "settings", "key": "nope", "optional": True}
                    },
                },
            ],
        }
    )
    assert "A" not in p.env
    assert "B" not in p.env


def test_mount_paths_rewritten_in_argv_and_env() -> None:
    p = plan(
        {
            "command": [
                "python",
                "/data/train.py",
                "--out=/data/model",
                "--db=/database",
                "/mnt/data",
                "http://h/data/x",
            ],
            "args": ["cat /data/a /data/b:/data"],
            "env": [
                {"name": "DATA", "value": "/data"},
                {"name": "OUT", "value": "$(DATA)/out"},
                {
                    "name": "CFG",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "path"}},
                },
            ],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        }
    )
    assert p.argv == (
        "python",
        "/host/vol/data/train.py",
        "--out=/host/vol/data/model",
        "--db=/database",
        "/mnt/data",
        "http://h/data/x",
        "cat /host/vol/data/a /host/vol/data/b:/host/vol/data",
    )
    assert p.env["DATA"] == "/host/vol/data"
    assert p.env["OUT"] == "/host/vol/data/out"
    assert p.env["CFG"] == "/host/vol/data/in"
    assert p.cwd == "/run/pod"


def test_rewriter_longest_mount_wins_and_no_double_rewrite() -> None:
    rw = PathRewriter.build([("/a", "/x/a"), ("/a/b", "/y"), ("/x", "/z")])
    assert rw("/a/b/c /a/c /x/q") == "/y/c /x/a/c /z/q"
    assert rw.resolve("/a/b/c") == "/y/c"
    assert rw.resolve("/a") == "/x/a"
    assert rw.resolve("/other") is None
    assert PathRewriter.build([("/", "/root")])("/etc") == "/etc"  # "/" is never rewritten


def test_sub_path_and_working_dir() -> None:
    p = plan(
        {
            "command": ["ls", "/app/file", "/cfg"],
            "workingDir": "/app",
            "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "volumeMounts": [{"name": "data", "mountPath": "/cfg", "subPathExpr": "$(POD)/conf"}],
        }
    )
    assert p.cwd == "/run/pod/app"
    assert p.argv == ("ls", "/run/pod/app/file", "/host/vol/data/p/conf")
    assert set(p.make_dirs) == {"/run/pod/app", "/host/vol/data/p/conf"}
    q = plan(
        {
            "command": ["x"],
            "workingDir": "/data/w",
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        }
    )
    assert q.cwd == "/host/vol/data/w"
    with pytest.raises(ConfigError, match="subPath"):
        plan(
            {
                "command": ["x"],
                "volumeMounts": [{"name": "data", "mountPath": "/d", "subPath": "../escape"}],
            }
        )


def test_no_command_is_an_error() -> None:
    with pytest.raises(ConfigError, match="needs `command`") as err:
        plan({})
    assert err.value.reason == "CreateContainerError"
    assert plan({"args": ["sh", "-c", "true"]}).argv == ("sh", "-c", "true")


def test_identity() -> None:
    restricted = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "fsGroup": 2000,
            "supplementalGroups": [3000],
        }
    }
    c: dict[str, Any] = {"name": "c"}
    assert identity(pod(c, **restricted), c, True).uid == 1000
    who = identity(pod(c, **restricted), c, True)
    assert (who.gid, who.groups) == (1000, (3000, 2000))
    own = {"name": "c", "securityContext": {"runAsUser": 1500, "runAsGroup": 1501}}
    assert identity(pod(own, **restricted), own, True).uid == 1500
    assert identity(pod(own, **restricted), own, True).gid == 1501
    nonroot = {"securityContext": {"runAsNonRoot": True}}
    assert identity(pod(c, **nonroot), c, True).uid == NOBODY
    assert identity(pod(c), c, True).uid is None  # no runAsUser: stay the agent's user
    assert identity(pod(c, **restricted), c, False).uid is None  # cannot switch
    bad = {"name": "c", "securityContext": {"runAsUser": 0, "runAsNonRoot": True}}
    with pytest.raises(ConfigError, match="non-root"):
        identity(pod(bad), bad, False)


def test_memory_limit_and_exec_argv() -> None:
    p = plan(
        {
            "command": ["x"],
            "resources": {"limits": {"memory": "256Mi"}},
            "env": [{"name": "F", "value": "/data/ok"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        }
    )
    assert p.memory_limit == 256 * 2**20
    assert p.exec_argv(["test", "-f", "$(F)", "/data/x"]) == (
        "test",
        "-f",
        "/host/vol/data/ok",
        "/host/vol/data/x",
    )


def test_referenced_objects() -> None:
    p = pod(
        {
            "name": "c",
            "envFrom": [{"secretRef": {"name": "s1"}}],
            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "k"}}}],
        }
    )
    p["spec"]["initContainers"] = [{"name": "i", "envFrom": [{"configMapRef": {"name": "c2"}}]}]
    p["spec"]["volumes"] += [
        {"name": "v1", "secret": {"secretName": "s2"}},
        {
            "name": "v2",
            "projected": {
                "sources": [
                    {"configMap": {"name": "kube-root-ca.crt"}},
                    {"serviceAccountToken": {"path": "token"}},
                ]
            },
        },
    ]
    refs = referenced_objects(p)
    assert refs.secrets == {"s1", "s2"}
    assert refs.config_maps == {"c1", "c2", "kube-root-ca.crt"}


def test_field_values() -> None:
    p = pod({"name": "c"})
    assert field_value(p, "metadata.uid", RT) == "u-1"
    assert field_value(p, "spec.nodeName", RT) == "node-a"
    assert field_value(p, "metadata.annotations['a']", RT) == "1"
    assert field_value(p, "metadata.labels", RT) == 'app="x"\ntier="web"\n'
    with pytest.raises(ConfigError, match="unsupported fieldRef"):
        field_value(p, "spec.whatever", RT)
    assert format_map({}) == ""


def test_resource_values() -> None:
    c = {"resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}}}
    assert resource_value(c, "limits.cpu", None, RT.allocatable) == "2"
    assert resource_value(c, "limits.cpu", "1m", RT.allocatable) == "1500"
    assert resource_value(c, "requests.memory", "1Mi", RT.allocatable) == "1024"
    assert resource_value({}, "requests.cpu", None, RT.allocatable) == "0"
    assert resource_value({}, "limits.cpu", None, RT.allocatable) == "2"


def test_container_port() -> None:
    c = {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}
    assert container_port(c, "http") == 8080
    assert container_port(c, 9090) == 9090
    assert container_port(c, "9091") == 9091
    with pytest.raises(ValueError, match="not a named port"):
        container_port(c, "metrics")
