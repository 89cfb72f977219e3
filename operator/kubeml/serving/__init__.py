"""The model server: Open Inference Protocol v2 and KServe v1 over HTTP, requests
validated against the model's signature and batched onto one predict thread,
Prometheus metrics with per-feature drift. ``kubeml.runtime.serve`` runs it."""
