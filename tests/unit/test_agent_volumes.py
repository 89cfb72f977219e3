"""Volumes rendered to files: items, modes, optional, projected sources, writing."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from kubeml_local.agent.podspec import ConfigError, Lookups, PodRuntime
from kubeml_local.agent.volumes import (
    FileSpec,
    render_volume,
    token_audiences,
    volume_kind,
    write_files,
)

RT = PodRuntime(pod_ip="127.1.0.2", host_ip="127.0.0.1", node_name="n")
LOOKUPS = Lookups(
    secrets={"s": {"user": b"u", "pass": b"p"}},
    config_maps={"c": {"a.conf": b"x=1\n", "b": b"2"}, "gone": None},
)
POD: dict[str, Any] = {
    "metadata": {"name": "p", "namespace": "ns", "labels": {"k": "v"}},
    "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "1Gi"}}}]},
}


def render(volume: dict[str, Any], tokens: dict[str, str] | None = None) -> dict[str, FileSpec]:
    return render_volume(volume, POD, RT, LOOKUPS, tokens or {})


def test_kinds() -> None:
    assert volume_kind({"name": "v", "emptyDir": {}}) == "emptyDir"
    assert volume_kind({"name": "v", "hostPath": {"path": "/x"}}) == "hostPath"
    assert volume_kind({"name": "v"}) == "emptyDir"


def test_config_map_all_keys_and_items() -> None:
    files = render({"name": "v", "configMap": {"name": "c"}})
    assert files == {"a.conf": FileSpec(b"x=1\n", 0o644), "b": FileSpec(b"2", 0o644)}
    files = render(
        {
            "name": "v",
            "configMap": {
                "name": "c",
                "defaultMode": 0o400,
                "items": [
                    {"key": "b", "path": "sub/b.txt"},
                    {"key": "a.conf", "path": "a", "mode": 0o600},
                ],
            },
        }
    )
    assert files == {"sub/b.txt": FileSpec(b"2", 0o400), "a": FileSpec(b"x=1\n", 0o600)}


def test_secret_missing_and_optional() -> None:
    assert render(
        {"name": "v", "secret": {"secretName": "s", "items": [{"key": "user", "path": "u"}]}}
    ) == {"u": FileSpec(b"u", 0o644)}
    with pytest.raises(ConfigError, match='secret "nope" not found'):
        render({"name": "v", "secret": {"secretName": "nope"}})
    assert render({"name": "v", "secret": {"secretName": "nope", "optional": True}}) == {}
    with pytest.raises(ConfigError, match="has no key"):
        render({"name": "v", "configMap": {"name": "c", "items": [{"key": "z", "path": "z"}]}})


def test_item_paths_may_not_escape() -> None:
    with pytest.raises(ConfigError, match="relative"):
        render({"name": "v", "configMap": {"name": "c", "items": [{"key": "b", "path": "../b"}]}})
    with pytest.raises(ConfigError, match="relative"):
        render({"name": "v", "configMap": {"name": "c", "items": [{"key": "b", "path": "/b"}]}})


def test_projected_kube_api_access() -> None:
    volume = {
        "name": "kube-api-access-x",
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "c", "items": [{"key": "b", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ],
        },
    }
    files = render(volume, {"": "TOKEN"})
    assert files == {
        "token": FileSpec(b"TOKEN", 0o644),
        "ca.crt": FileSpec(b"2", 0o644),
        "namespace": FileSpec(b"ns", 0o644),
    }
    with pytest.raises(ConfigError, match="token"):
        render(volume, {})
    assert token_audiences({"spec": {"volumes": [volume]}}) == {"": 3607}


def test_downward_api_volume() -> None:
    files = render(
        {
            "name": "v",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {
                        "path": "mem",
                        "resourceFieldRef": {
                            "containerName": "c",
                            "resource": "limits.memory",
                            "divisor": "1Mi",
                        },
                    },
                ]
            },
        }
    )
    assert files["labels"].data == b'k="v"\n'
    assert files["mem"].data == b"1024"


def test_write_files(tmp_path: Path) -> None:
    write_files(tmp_path / "v", {"a/b/c": FileSpec(b"1", 0o600), "d": FileSpec(b"2", 0o644)}, None)
    assert (tmp_path / "v/a/b/c").read_bytes() == b"1"
    assert stat.S_IMODE((tmp_path / "v/a/b/c").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "v/a").stat().st_mode) == 0o755
    write_files(tmp_path / "v", {"d": FileSpec(b"3", 0o644)}, None)  # atomic rewrite
    assert (tmp_path / "v/d").read_bytes() == b"3"
    assert not list((tmp_path / "v").glob(".*.tmp"))
