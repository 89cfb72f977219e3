"""Command lines of the control-plane components (pure functions: easy to read and test)."""

from __future__ import annotations

import sys
from pathlib import Path

from kubeml_local.config import ClusterConfig
from kubeml_local.layout import Layout
from kubeml_local.pki import Pki

SA_ISSUER = "https://kubernetes.default.svc.cluster.local"

# An explicit list: an unknown name stops the controller manager at startup, and the
# defaults include node-lifecycle/taint-eviction, which would evict pods from a node
# whose agent renews no Lease. endpointslice is left out: slices reject loopback pod IPs.
CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "replicaset-controller",
    "deployment-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    # Publishes kube-root-ca.crt into every namespace; projected service-account
    # volumes (kube-api-access-*) reference it.
    "root-ca-certificate-publisher-controller",
    "ttl-after-finished-controller",
    # Fills the aggregated admin/edit/view ClusterRoles (and rules CRDs aggregate into).
    "clusterrole-aggregation-controller",
    "pod-garbage-collector-controller",
    # Starts without a metrics server; HPAs then report missing metrics, nothing crashes.
    "horizontal-pod-autoscaler-controller",
)


def etcd(cfg: ClusterConfig, layout: Layout) -> list[str]:
    client = cfg.etcd_url
    peer = f"http://127.0.0.1:{cfg.ports.etcd_peer}"
    return [
        str(Path(cfg.bin_dir) / "etcd"),
        "--name=kubeml",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=kubeml={peer}",
        # A throwaway dev store: durability across power loss is not worth the fsyncs.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


# Every request at Metadata level (verb, resource, user, user agent, response code), once
# it has an answer; leases are the nodes' and controllers' heartbeats, and only noise.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    resources: [{group: coordination.k8s.io, resources: [leases]}]
  - level: Metadata
"""


def write_audit_policy(layout: Layout) -> None:
    layout.audit_policy.write_text(AUDIT_POLICY)


def apiserver(cfg: ClusterConfig, layout: Layout, pki: Pki) -> list[str]:
    return [
        str(Path(cfg.bin_dir) / "kube-apiserver"),
        f"--etcd-servers={cfg.etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={cfg.ports.apiserver}",
        # The default reconciler writes the advertise address into the `kubernetes`
        # Endpoints, and Endpoints validation rejects loopback addresses.
        "--endpoint-reconciler-type=none",
        # Otherwise it may write self-signed certs to /var/run/kubernetes.
        f"--cert-dir={layout.pki}",
        f"--tls-cert-file={pki.apiserver_cert}",
        f"--tls-private-key-file={pki.apiserver_key}",
        f"--client-ca-file={pki.ca_cert}",
        "--authorization-mode=Node,RBAC",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={cfg.require_service_cidr()}",
        # Privileged pods are allowed by the apiserver so that PodSecurity admission (on by
        # default, with the default admission plugins) is what rejects them.
        "--allow-privileged=true",
        # For logs/exec/port-forward the apiserver dials the node. The agent's Node has a
        # Hostname address (not resolvable: the lookup would go to an off-machine DNS
        # server) and InternalIP 127.0.0.1; only ever dial the latter.
        "--kubelet-preferred-address-types=InternalIP",
        # ... over TLS both ways: the agent's kubelet API presents a certificate of the
        # cluster CA and serves only this client certificate.
        f"--kubelet-certificate-authority={pki.ca_cert}",
        f"--kubelet-client-certificate={pki.apiserver_kubelet_client[0]}",
        f"--kubelet-client-key={pki.apiserver_kubelet_client[1]}",
        "--profiling=false",
        # Tests count the requests a component makes (e.g. none from an idle operator).
        f"--audit-policy-file={layout.audit_policy}",
        f"--audit-log-path={layout.audit_log}",
        "--audit-log-format=json",
        "--audit-log-maxsize=50",
        "--audit-log-maxbackup=2",
    ]


def controller_manager(cfg: ClusterConfig, layout: Layout, pki: Pki) -> list[str]:
    return [
        str(Path(cfg.bin_dir) / "kube-controller-manager"),
        f"--kubeconfig={layout.controller_manager_kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        "--secure-port=0",  # no health endpoint needed: readiness is observed via the API
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca_cert}",
        # Each controller acts as its own service account, which the bootstrap RBAC
        # policy grants exactly what that controller needs.
        "--use-service-account-credentials=true",
        f"--controllers={','.join(CONTROLLERS)}",
        "--cluster-name=kubeml-local",
        "--profiling=false",
    ]


def seaweedfs(cfg: ClusterConfig, layout: Layout, weed: Path) -> list[str]:
    p = cfg.ports
    run = layout.run
    return [
        str(weed),
        "server",
        f"-dir={layout.seaweedfs_data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        # Every port explicit: defaults (8333, 9333, port+10000 for gRPC...) may be taken
        # and would collide between two clusters on one machine.
        f"-master.port={p.master}",
        f"-master.port.grpc={p.master_grpc}",
        f"-volume.port={p.volume}",
        f"-volume.port.grpc={p.volume_grpc}",
        f"-filer.port={p.filer}",
        f"-filer.port.grpc={p.filer_grpc}",
        "-s3",
        f"-s3.port={p.s3}",
        f"-s3.port.grpc={p.s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={layout.s3_identities}",
        f"-s3.localSocket={run / 's3.sock'}",
        f"-filer.localSocket={run / 'filer.sock'}",
        # On by default, and it would send usage reports off this machine.
        "-master.telemetry=false",
        # A restarted single master stays a raft follower for a whole election timeout
        # (default 10 s) before it leads again; there are no peers to wait for.
        "-master.electionTimeout=1s",
        # Default 10 s pause before the volume server stops; we stop it ourselves.
        "-volume.preStopSeconds=0",
        # Default 30 GB volumes; small ones keep a dev disk from filling up front.
        "-master.volumeSizeLimitMB=1024",
        "-volume.max=0",
    ]


def agent(cfg: ClusterConfig, layout: Layout) -> list[str]:
    pki = Pki(layout.pki)
    return [
        sys.executable,
        "-m",
        "kubeml_local.agent",
        # The kubelet API (container logs) the apiserver calls.
        f"--kubelet-port={cfg.ports.kubelet}",
        f"--tls-cert-file={pki.kubelet_cert}",
        f"--tls-private-key-file={pki.kubelet_key}",
        f"--client-ca-file={pki.ca_cert}",
        "--kubeconfig",
        str(layout.agent_kubeconfig),
        "--node-name",
        cfg.node_name,
        "--state-dir",
        str(layout.root),
        # The proxy listens only on ClusterIPs of this cluster's own range.
        "--service-cidr",
        cfg.require_service_cidr(),
        *(["--images"] if cfg.images else []),
    ]
