"""The model server: Open Inference Protocol v2 over HTTP (with the binary tensor data
extension) and gRPC, and KServe v1; requests validated against the model's signature
and batched onto one predict thread; what clients can make it hold bounded; Prometheus
metrics with per-feature drift. ``kubeml.runtime.serve`` runs it."""
