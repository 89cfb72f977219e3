"""Services answer on their ClusterIPs: the node agent's proxy on real sockets, then on
the real control plane (endpoints follow readiness, pods get the Services' variables)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client

from kubeml_local import readiness
from kubeml_local.agent.proxy import Limits, Relay
from kubeml_local.agent.services import Endpoint, Listener, PortKey
from kubeml_local.layout import Layout
from kubeml_local.pki import Pki
from tests.integration.test_agent import container, log_of, pod_spec, run_pod, wait

pytestmark = pytest.mark.integration

Json = dict[str, Any]
# Bypasses any proxy from the environment: ClusterIPs are loopback addresses.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
KEY = PortKey("t", "echo", "")


# -- the relay on real sockets, no cluster ---------------------------------------------------


def _free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def backend(name: bytes, ip: str = "127.0.0.1") -> AsyncIterator[Endpoint]:
    """Answers each connection with its name, then echoes until the client half-closes."""

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(name + b":")
        while data := await r.read(1024):
            w.write(data)
        w.close()

    server = await asyncio.start_server(serve, ip, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Endpoint(ip, port, name.decode())
    finally:
        server.close()


async def exchange(address: tuple[str, int], payload: bytes = b"hi") -> bytes:
    r, w = await asyncio.open_connection(*address)
    w.write(payload)
    w.write_eof()  # half-close: the answer must still come back
    data = await asyncio.wait_for(r.read(), 5)
    w.close()
    return data


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_relay_spreads_connections_and_skips_an_endpoint_that_refuses() -> None:
    async def main() -> None:
        relay = Relay()
        listen = ("127.0.0.1", _free_port())
        dead = Endpoint("127.0.0.1", _free_port(), "dead")  # nothing listens there
        async with backend(b"a") as a, backend(b"b") as b:
            await relay.apply({listen: Listener(KEY, (a, b))})
            answers = [await exchange(listen) for _ in range(10)]
            assert Counter(answers) == {b"a:hi": 5, b"b:hi": 5}
            await relay.apply({listen: Listener(KEY, (a, dead, b))})
            answers = [await exchange(listen, b"x" * 100_000) for _ in range(9)]
            assert all(x.endswith(b"x" * 100_000) for x in answers)
            # The rotation goes on at dead, b, a: each of dead's turns is retried at b.
            assert Counter(x[:2] for x in answers) == {b"a:": 3, b"b:": 6}
            assert relay.retried == 3
            await relay.apply({listen: Listener(KEY, (dead,))})
            assert await _no_answer(listen)
            await relay.apply({})
            with pytest.raises(ConnectionRefusedError):
                await exchange(listen)

    run(main())


def test_relay_bounds_open_connections_and_closes_idle_ones() -> None:
    async def main() -> None:
        relay = Relay(Limits(max_connections=2, idle_timeout_s=0.5))
        listen = ("127.0.0.1", _free_port())
        async with backend(b"a") as a:
            await relay.apply({listen: Listener(KEY, (a,))})
            loop = asyncio.get_running_loop()
            begin = loop.time()
            held = [await asyncio.open_connection(*listen) for _ in range(2)]
            for r, _ in held:
                assert await r.readexactly(2) == b"a:"
            r3, w3 = await asyncio.open_connection(*listen)  # over the cap: reset at once
            assert await asyncio.wait_for(_closed(r3), 5)
            assert relay.refused_over_limit == 1
            # Silent connections are closed after the idle timeout, freeing their slots.
            for r, _ in held:
                assert await asyncio.wait_for(_closed(r), 5)
            assert 0.5 <= loop.time() - begin < 3
            assert await exchange(listen) == b"a:hi"
            for _, w in [*held, (r3, w3)]:
                w.close()
            await relay.close()

    run(main())


async def _no_answer(address: tuple[str, int]) -> bool:
    try:
        return await exchange(address) == b""
    except ConnectionError:
        return True


async def _closed(r: asyncio.StreamReader) -> bool:
    try:
        return await r.read(1) == b""
    except ConnectionError:
        return True


# -- on the real control plane ---------------------------------------------------------------

SERVER = """
import http.server, os
ready = [True]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            code, body = (200 if ready[0] else 503), b""
        elif self.path == "/unready":
            ready[0] = False
            code, body = 200, b"ok"
        else:
            code, body = 200, os.environ["POD_NAME"].encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((os.environ["POD_IP"], 8080), H).serve_forever()
"""


def web(replicas: int) -> Json:
    server = container(
        "http",
        ["python", "-c", SERVER],
        env=[
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        ports=[{"name": "http", "containerPort": 8080}],
        readinessProbe={"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec(server)},
        },
    }


WEB_SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web"},
    "spec": {
        "selector": {"app": "web"},
        # A named targetPort, and a second port by number.
        "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "alt", "port": 8000, "targetPort": 8080},
        ],
    },
}


def get(url: str) -> str | None:
    assert url.startswith("http://127."), url  # never dial anything but loopback
    try:
        with HTTP.open(url, timeout=5) as resp:
            return str(resp.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def ready_names(core: client.CoreV1Api, ns: str) -> dict[str, str]:
    out = {}
    for p in core.list_namespaced_pod(ns, label_selector="app=web").items:
        conditions = {c.type: c.status for c in p.status.conditions or []}
        if conditions.get("Ready") == "True" and p.metadata.deletion_timestamp is None:
            out[p.metadata.name] = p.status.pod_ip
    return out


def _ready_count(core: client.CoreV1Api, ns: str, n: int) -> dict[str, str] | None:
    names = ready_names(core, ns)
    return names if len(names) == n else None


def answers(url: str, n: int) -> Counter[str | None]:
    return Counter(get(url) for _ in range(n))


def test_a_service_answers_on_its_cluster_ip_and_follows_readiness(
    kube_api: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    core.create_namespaced_service(namespace, WEB_SERVICE)
    apps.create_namespaced_deployment(namespace, web(2))
    names = wait(lambda: _ready_count(core, namespace, 2), "2 ready web pods")
    ip = core.read_namespaced_service("web", namespace).spec.cluster_ip
    assert ip.startswith("127.") and ip not in names.values()
    url = f"http://{ip}/"
    # Both ready pods answer, one new connection each in turn, on both ports.
    wait(lambda: set(answers(url, 4)) == set(names), "both pods behind the ClusterIP")
    assert answers(url, 20) == dict.fromkeys(names, 10)
    assert set(answers(f"http://{ip}:8000/", 4)) == set(names)

    # One pod turns unready: new connections go to the other only.
    unready, still = sorted(names)
    assert get(f"http://{names[unready]}:8080/unready") == "ok"
    wait(lambda: answers(url, 6) == {still: 6}, "only the ready pod answers")
    assert answers(url, 20) == {still: 20}

    # Scaled to zero: the ClusterIP refuses (no ready endpoint), and answers again after.
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 0}})
    wait(lambda: get(url) is None, "no answer without endpoints")
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 1}})
    wait(lambda: get(url) not in (None, unready, still), "a new pod answers")

    # The Service goes away: so does its listener.
    core.delete_namespaced_service("web", namespace)
    wait(lambda: _refused(ip, 80), "listener closed")


def _refused(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_the_kubernetes_service_answers_with_the_apiserver(
    kube_api: client.ApiClient, state_layout: Layout
) -> None:
    svc = client.CoreV1Api(kube_api).read_namespaced_service("kubernetes", "default")
    ip, port = svc.spec.cluster_ip, svc.spec.ports[0].port
    # TLS verified against the cluster CA: the apiserver's certificate names the ClusterIP.
    ctx = readiness.client_context(Pki(state_layout.pki))
    wait(lambda: readiness.apiserver_ready(f"https://{ip}:{port}", ctx), "apiserver via ClusterIP")


def test_pods_get_the_variables_of_services_in_their_namespace(
    kube_api: client.ApiClient, namespace: str, state_layout: Layout
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_service(namespace, WEB_SERVICE)
    client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, web(1))
    ip = core.read_namespaced_service("web", namespace).spec.cluster_ip
    wait(lambda: _ready_count(core, namespace, 1), "a ready web pod")
    script = (
        "import os, urllib.request as u; e = os.environ; "
        "print(e.get('WEB_SERVICE_HOST'), e.get('WEB_SERVICE_PORT'), "
        "e.get('WEB_SERVICE_PORT_ALT'), e.get('WEB_PORT_8000_TCP'), "
        "bool(e.get('KUBERNETES_SERVICE_HOST'))); "
        "h = e.get('WEB_SERVICE_HOST'); "
        "print(h and u.build_opener(u.ProxyHandler({})).open("
        "f'http://{h}:{e[\"WEB_SERVICE_PORT\"]}/', timeout=10).read().decode()[:4])"
    )

    def linked(**extra: Any) -> Json:
        return pod_spec(container("main", ["python", "-c", script]), restartPolicy="Never", **extra)

    pod = run_pod(core, namespace, "linked", linked())
    assert pod.status.phase == "Succeeded"
    assert log_of(state_layout, namespace, "linked").splitlines() == [
        f"{ip} 80 8000 tcp://{ip}:8000 True",
        "web-",  # through the ClusterIP, from inside a pod
    ]
    run_pod(core, namespace, "unlinked", linked(enableServiceLinks=False))
    assert log_of(state_layout, namespace, "unlinked").splitlines() == [
        "None None None None True",
        "None",
    ]
