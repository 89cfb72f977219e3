"""``python -m kubeml_local.agent --kubeconfig PATH --node-name NAME --state-dir DIR``"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from ipaddress import ip_network
from pathlib import Path

from kubeml_local.agent.agent import HOST_IP, Agent, AgentConfig
from kubeml_local.agent.imagestore import ImageStore
from kubeml_local.agent.kubelet import Serving
from kubeml_local.agent.node import default_resources


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m kubeml_local.agent",
        description="KubeML local node agent (kubelet + scheduler).",
    )
    p.add_argument("--kubeconfig", required=True, type=Path)
    p.add_argument("--node-name", required=True)
    p.add_argument("--state-dir", required=True, type=Path)
    p.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="pod directories (default: <state-dir>/agent-run if every uid can "
        "reach it, else /tmp/kubeml-agent-<instance>)",
    )
    p.add_argument(
        "--pod-cidr",
        default="127.1.0.0/16",
        help="loopback range for pod IPs (one per node on a host)",
    )
    p.add_argument(
        "--service-cidr",
        default=None,
        help="loopback range of this cluster's ClusterIPs: Services there are proxied to "
        "their ready pods (default: no service proxy)",
    )
    p.add_argument("--cpu", default=None, help="node capacity cpu (default: host cores)")
    p.add_argument("--memory", default=None, help="node capacity memory (default: host RAM)")
    p.add_argument("--max-pods", default="110")
    p.add_argument("--heartbeat-seconds", type=float, default=10.0)
    p.add_argument(
        "--run-as-pod-user",
        choices=("auto", "always", "never"),
        default="auto",
        help="drop pod processes to runAsUser (auto: when root and the Python "
        "installation is reachable by every uid)",
    )
    p.add_argument(
        "--kubelet-port",
        type=int,
        default=0,
        help="serve the kubelet API (container logs) on this port of 127.0.0.1 (0: off)",
    )
    p.add_argument("--tls-cert-file", type=Path, help="the kubelet API's serving certificate")
    p.add_argument("--tls-private-key-file", type=Path)
    p.add_argument("--client-ca-file", type=Path, help="CA of the apiserver's client cert")
    p.add_argument(
        "--images",
        action="store_true",
        help="run each container inside its image from buildah's local store (needs root "
        "and buildah; an image not there is ErrImagePull)",
    )
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.service_cidr and ip_network(args.service_cidr).overlaps(ip_network(args.pod_cidr)):
        sys.exit(f"--pod-cidr {args.pod_cidr} overlaps --service-cidr {args.service_cidr}")
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # urllib3 logs every retry while the apiserver restarts; our own messages say enough.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    if args.images:
        why = ImageStore.available() or (
            None if os.geteuid() == 0 else "running pods inside images needs root (mounts, chroot)"
        )
        if why:
            print(f"--images: {why}", file=sys.stderr)
            return 2
    resources = default_resources(args.cpu, args.memory)
    resources = type(resources)(cpu=resources.cpu, memory=resources.memory, pods=args.max_pods)
    kubelet = None
    if args.kubelet_port:
        if not (args.tls_cert_file and args.tls_private_key_file and args.client_ca_file):
            print(
                "--kubelet-port needs --tls-cert-file, --tls-private-key-file and --client-ca-file",
                file=sys.stderr,
            )
            return 2
        kubelet = Serving(
            HOST_IP,
            args.kubelet_port,
            args.tls_cert_file,
            args.tls_private_key_file,
            args.client_ca_file,
        )
    cfg = AgentConfig(
        kubeconfig=args.kubeconfig,
        node_name=args.node_name,
        state_dir=args.state_dir.expanduser().resolve(),
        resources=resources,
        pod_cidr=args.pod_cidr,
        kubelet=kubelet,
        run_dir=args.run_dir,
        heartbeat_seconds=args.heartbeat_seconds,
        run_as_pod_user=args.run_as_pod_user,
        service_cidr=args.service_cidr,
        images=args.images,
    )

    async def amain() -> None:
        await Agent(cfg).run()

    asyncio.run(amain())
    return 0


if __name__ == "__main__":
    sys.exit(main())
