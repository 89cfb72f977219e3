"""The kubelet API's pure decisions: containerLogs paths, query parameters, who may call."""

from __future__ import annotations

import datetime as dt
import io

import pytest

from kubeml_local.agent.logquery import (
    LogOptions,
    QueryError,
    authorize,
    parse_path,
    parse_query,
    since_verdict,
    tail_offset,
)

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_paths() -> None:
    assert parse_path("/containerLogs/ns/pod-1/main") == ("ns", "pod-1", "main")
    assert parse_path("/containerLogs/ns/pod-1/main/") == ("ns", "pod-1", "main")
    for bad in (
        "/containerLogs/ns/pod",
        "/containerLogs/ns/pod/c/extra",
        "/containerLogs/ns/%2e%2e/c",
        "/containerLogs/ns/a%2fb/c",
        "/logs/ns/pod/c",
        "/containerLogs//pod/c",
    ):
        assert parse_path(bad) is None, bad


def test_query_as_the_apiserver_sends_it() -> None:
    options = parse_query(
        {"follow": "true", "previous": "false", "tailLines": "10", "limitBytes": "500"}, NOW
    )
    assert options == LogOptions(follow=True, previous=False, tail_lines=10, limit_bytes=500)
    assert parse_query({}, NOW) == LogOptions()
    assert parse_query({"previous": "1", "tailLines": "0"}, NOW) == LogOptions(
        previous=True, tail_lines=0
    )


def test_since() -> None:
    assert parse_query({"sinceSeconds": "60"}, NOW).since == NOW - dt.timedelta(seconds=60)
    when = parse_query({"sinceTime": "2026-01-01T00:00:00Z"}, NOW).since
    assert when == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "query",
    [
        {"follow": "yes"},
        {"tailLines": "-1"},
        {"tailLines": "ten"},
        {"limitBytes": "0"},
        {"sinceSeconds": "0"},
        {"sinceSeconds": "5", "sinceTime": "2026-01-01T00:00:00Z"},
        {"sinceTime": "yesterday"},
        {"sinceTime": "2026-01-01T00:00:00"},
        {"timestamps": "true"},
    ],
)
def test_bad_queries_are_400(query: dict[str, str]) -> None:
    with pytest.raises(QueryError):
        parse_query(query, NOW)


def test_since_verdict() -> None:
    since = NOW - dt.timedelta(minutes=5)
    later, earlier = NOW - dt.timedelta(minutes=1), NOW - dt.timedelta(minutes=10)
    assert since_verdict(since, run_started=later, last_write=NOW) == "all"
    assert since_verdict(since, run_started=earlier, last_write=earlier) == "none"
    assert since_verdict(since, run_started=None, last_write=earlier) == "none"
    with pytest.raises(QueryError, match="per-line times"):
        since_verdict(since, run_started=earlier, last_write=NOW)


@pytest.mark.parametrize(
    ("data", "lines", "expected"),
    [
        (b"a\nb\nc\n", 1, b"c\n"),
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc\n", 3, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 10, b"a\nb\nc\n"),
        (b"a\nb\nc", 1, b"c"),  # a last line without its newline yet
        (b"a\nb\nc", 2, b"b\nc"),
        (b"a\nb\n", 0, b""),
        (b"", 3, b""),
        (b"\n\n", 1, b"\n"),
    ],
)
def test_tail(data: bytes, lines: int, expected: bytes) -> None:
    f = io.BytesIO(data)
    assert data[tail_offset(f, lines) :] == expected


def test_tail_across_blocks() -> None:
    data = b"".join(b"line %05d %s\n" % (i, b"x" * 500) for i in range(100))
    f = io.BytesIO(data)
    start = tail_offset(f, 37)
    assert data[start:].count(b"\n") == 37
    assert data[start:].startswith(b"line 00063 ")


def subject(*pairs: tuple[str, str]) -> dict[str, object]:
    return {"subject": tuple(((k, v),) for k, v in pairs)}


def test_only_the_apiservers_kubelet_client_is_allowed() -> None:
    apiserver = subject(
        ("organizationName", "kubeml:kubelet-api"),
        ("commonName", "kube-apiserver-kubelet-client"),
    )
    assert authorize(apiserver).status == 200
    assert authorize(None).status == 401
    assert authorize({}).status == 401
    admin = subject(("organizationName", "system:masters"), ("commonName", "kubeml-admin"))
    assert authorize(admin).status == 403
    assert "user=kubeml-admin" in authorize(admin).reason
    no_group = subject(("commonName", "kube-apiserver-kubelet-client"))
    assert authorize(no_group).status == 403
    two_names = subject(
        ("organizationName", "kubeml:kubelet-api"),
        ("commonName", "kube-apiserver-kubelet-client"),
        ("commonName", "someone-else"),
    )
    assert authorize(two_names).status == 403
