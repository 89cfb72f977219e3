"""The operator's two listening endpoints, checked before kopf starts.

Pods of the local control plane listen on their own 127.x addresses on the host, and
anything else may hold a port: a taken port must be one line naming the setting that
moves it, not a traceback from inside kopf's startup.
"""

from __future__ import annotations

import errno
import socket

from .settings import Settings


class PortTaken(RuntimeError):
    pass


def endpoints(settings: Settings) -> list[tuple[str, int, str]]:
    """(purpose, port, environment variable that sets it)."""
    return [
        ("health probes (/healthz)", settings.health_port, "KUBEML_HEALTH_PORT"),
        ("Prometheus metrics", settings.metrics_port, "KUBEML_METRICS_PORT"),
    ]


def preflight(settings: Settings) -> None:
    """Bind each endpoint once and let go; raise PortTaken naming the setting."""
    if settings.health_port == settings.metrics_port:
        raise PortTaken(
            f"KUBEML_HEALTH_PORT and KUBEML_METRICS_PORT are both {settings.health_port}; "
            "they must differ"
        )
    for purpose, port, env in endpoints(settings):
        with socket.socket(_family(settings.bind_address), socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((settings.bind_address, port))
            except OSError as err:
                why = "address already in use" if err.errno == errno.EADDRINUSE else err.strerror
                raise PortTaken(
                    f"cannot listen on {settings.bind_address}:{port} for {purpose}: {why}; "
                    f"set {env} (or KUBEML_BIND_ADDRESS) to a free one"
                ) from err


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET
