"""The node agent of the local cluster: kubelet and scheduler of one node, in Python.

``python -m kubeml_local.agent --kubeconfig PATH --node-name NAME --state-dir DIR``
registers a Node, binds pending pods to it, and runs each container's ``command`` +
``args`` as a local process (images are ignored). Rules worth knowing:

- Pod IPs are loopback addresses (127.1.0.2, ...), one per pod; servers must bind
  ``$(POD_IP)`` (a status.podIP fieldRef) or ``$KUBEML_POD_IP``, not 0.0.0.0.
- Volumes are directories; mount paths are rewritten into them in command, args and env
  values (see :mod:`.podspec`). The working directory is a per-pod root (also ``HOME``).
- Processes run as the pod's runAsUser/runAsGroup when the agent is root
  (:func:`.podspec.identity`), with a minimal environment; ``KUBECONFIG`` points at a
  kubeconfig with the pod's own ServiceAccount token (TokenRequest, bound to the pod).
- Memory limits are enforced by sampling RSS per session (:mod:`.memory`).
- Services answer on their ClusterIPs (loopback addresses of the cluster's own range):
  the agent proxies each TCP port to the ready pods the selector matches, round-robin per
  new connection (:mod:`.proxy`, decisions in :mod:`.services`), and gives pods the
  ``<NAME>_SERVICE_HOST/_PORT`` variables of their namespace's Services.
- Logs: ``<state-dir>/pods/<namespace>/<pod>/<container>.log``, appended across restarts.
"""
