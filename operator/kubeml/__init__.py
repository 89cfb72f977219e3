"""KubeML: the MLOps lifecycle as Kubernetes resources."""

__version__ = "0.1.0"
