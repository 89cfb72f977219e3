"""Containers planned inside their images: Kubernetes' rules for ENTRYPOINT/CMD, ENV, USER,
WORKDIR and mounts; and the launcher's symlink-safe resolution of mount points."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from kubeml_local.agent.enter import resolve_in_root
from kubeml_local.agent.imageplan import ImageConfig, image_user, plan_in_image
from kubeml_local.agent.podspec import ConfigError, Lookups, PodRuntime

IMAGE = ImageConfig(
    entrypoint=("kubeml",),
    cmd=("--help",),
    env=("PATH=/opt/kubeml/bin:/usr/bin:/bin", "HOME=/tmp", "PYTHONUNBUFFERED=1"),
    user="65532:65532",
    working_dir="/tmp",
)
PASSWD = "root:x:0:0:root:/root:/bin/bash\nkubeml:x:65532:65532::/tmp:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nkubeml:x:65532:\nstaff:x:50:\n"
RT = PodRuntime(pod_ip="127.1.0.7", host_ip="127.0.0.1", node_name="n")
BASE = {
    "PATH": "/host/venv/bin:/usr/bin",
    "HOME": "/host/pods/x/root",
    "KUBECONFIG": "/host/sa/kubeconfig",
    "KUBERNETES_SERVICE_HOST": "127.0.0.1",
    "KUBEML_POD_NAME": "p",
}


def pod(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "cfg", "configMap": {}}],
            **spec,
        },
    }


def plan(container: dict[str, Any], image: ImageConfig = IMAGE, **spec: Any) -> Any:
    return plan_in_image(
        pod(container, **spec),
        container,
        image_ref="ghcr.io/kubeml/runtime:0.1.0",
        image=image,
        root="/var/lib/containers/x/merged",
        passwd=PASSWD,
        group=GROUP,
        rt=RT,
        lookups=Lookups(),
        base_env=BASE,
        volume_dirs={"tmp": "/host/pods/u1/volumes/tmp", "cfg": "/host/pods/u1/volumes/cfg"},
    )


@pytest.mark.parametrize(
    ("command", "args", "argv"),
    [
        (None, None, ("kubeml", "--help")),
        (None, ["serve"], ("kubeml", "serve")),
        (["python"], None, ("python",)),
        (["kubeml"], ["train", "x"], ("kubeml", "train", "x")),
    ],
)
def test_command_replaces_entrypoint_and_args_replace_cmd(
    command: list[str] | None, args: list[str] | None, argv: tuple[str, ...]
) -> None:
    c: dict[str, Any] = {"name": "main", "image": "i"}
    if command is not None:
        c["command"] = command
    if args is not None:
        c["args"] = args
    assert plan(c).argv == argv


def test_env_layers_image_then_agent_then_container_and_drops_host_paths() -> None:
    p = plan({"name": "main", "env": [{"name": "HOME", "value": "/work"}]})
    assert p.env["PATH"] == "/opt/kubeml/bin:/usr/bin:/bin"  # the image's, not the host venv
    assert p.env["HOME"] == "/work"  # the container's own wins
    assert p.env["PYTHONUNBUFFERED"] == "1"
    assert p.env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert "KUBECONFIG" not in p.env  # a host path: in-cluster config uses the token mount


def test_image_user_and_workdir_unless_the_pod_says_otherwise() -> None:
    p = plan({"name": "main"})
    assert (p.identity.uid, p.identity.gid, p.cwd) == (65532, 65532, "/tmp")
    q = plan(
        {"name": "main", "workingDir": "/data", "securityContext": {"runAsUser": 1000}},
        securityContext={"fsGroup": 2000, "supplementalGroups": [50]},
    )
    assert (q.identity.uid, q.identity.gid, q.cwd) == (1000, 1000, "/data")
    assert q.identity.groups == (50, 2000)


def test_run_as_non_root_refuses_an_image_running_as_root() -> None:
    root_image = ImageConfig(entrypoint=("sh",), user="")
    with pytest.raises(ConfigError, match="runAsNonRoot"):
        plan({"name": "main"}, image=root_image, securityContext={"runAsNonRoot": True})


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", (0, 0)),
        ("kubeml", (65532, 65532)),
        ("65532", (65532, 65532)),
        ("kubeml:staff", (65532, 50)),
        ("4242", (4242, 4242)),
        ("1:2", (1, 2)),
    ],
)
def test_image_user_forms(user: str, expected: tuple[int, int]) -> None:
    assert image_user(user, PASSWD, GROUP) == expected


def test_unknown_user_name_is_a_create_container_error() -> None:
    with pytest.raises(ConfigError) as err:
        image_user("nobody-here", PASSWD, GROUP)
    assert err.value.reason == "CreateContainerError"
    assert "nobody-here" in err.value.message


def test_mounts_keep_their_paths_read_only_flags_and_parent_first_order() -> None:
    p = plan(
        {
            "name": "main",
            "securityContext": {"readOnlyRootFilesystem": True},
            "volumeMounts": [
                {"name": "cfg", "mountPath": "/tmp/conf/", "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }
    )
    box = p.sandbox
    assert box is not None and box.read_only_root
    assert [(m.target, m.source, m.read_only) for m in box.mounts] == [
        ("/tmp", "/host/pods/u1/volumes/tmp", False),
        ("/tmp/conf", "/host/pods/u1/volumes/cfg", True),
    ]
    # Nothing is rewritten: the process sees the mount paths themselves.
    assert p.rewriter("/tmp/conf/x") == "/tmp/conf/x"


def test_no_command_anywhere_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no command"):
        plan({"name": "main"}, image=ImageConfig(user="0"))


def test_mount_points_resolve_symlinks_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "run").mkdir(parents=True)
    (root / "var").mkdir()
    os.symlink("/run", root / "var" / "run")  # Debian's absolute link
    os.symlink("../../etc", root / "run" / "up")  # climbing above / stays inside
    resolved = resolve_in_root(str(root), "/var/run/secrets/token")
    assert resolved == str(root / "run" / "secrets" / "token")
    assert resolve_in_root(str(root), "/run/up/hosts") == str(root / "etc" / "hosts")
    assert resolve_in_root(str(root), "/../../x") == str(root / "x")
