"""A real single-node Kubernetes control plane on loopback, for tests and the demo.

Machines here have no Docker, so kind cannot run. ``kubeml local up`` starts etcd,
kube-apiserver, kube-controller-manager, a SeaweedFS S3 server and the node agent
(``kubeml_local.agent``) as local processes under one detached supervisor. See
``kubeml_local.cluster`` for the Python API and ``kubeml_local.cli`` for the commands.
"""
