"""The operator's endpoints: a taken port is one line naming the setting that moves it."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from kubeml.listening import PortTaken, preflight
from kubeml.settings import Settings


@pytest.fixture
def held() -> Iterator[int]:
    """A port something else listens on, as a model-server pod does on the host."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_default_binds_loopback_only() -> None:
    assert Settings().bind_address == "127.0.0.1"
    assert Settings.from_env({}).bind_address == "127.0.0.1"


def test_free_ports_pass() -> None:
    preflight(Settings(health_port=free_port(), metrics_port=free_port()))


@pytest.mark.parametrize(
    ("which", "setting"), [("health", "KUBEML_HEALTH_PORT"), ("metrics", "KUBEML_METRICS_PORT")]
)
def test_a_taken_port_names_its_setting(held: int, which: str, setting: str) -> None:
    ports = {"health_port": free_port(), "metrics_port": free_port(), f"{which}_port": held}
    with pytest.raises(PortTaken) as err:
        preflight(Settings(**ports))
    message = str(err.value)
    assert "\n" not in message
    assert f"127.0.0.1:{held}" in message and "address already in use" in message
    assert setting in message


def test_a_pod_on_another_loopback_address_does_not_collide() -> None:
    """A server pod on 127.x:port leaves 127.0.0.1:port free for the operator."""
    with socket.socket() as pod:
        pod.bind(("127.0.0.2", 0))
        pod.listen()
        port = int(pod.getsockname()[1])
        preflight(Settings(health_port=port, metrics_port=free_port()))


def test_equal_ports_are_refused() -> None:
    with pytest.raises(PortTaken, match="must differ"):
        preflight(Settings(health_port=18080, metrics_port=18080))
