"""Thin kopf handlers: gather -> decide (kubeml.reconcile) -> apply -> report.

Importing this package registers every handler with kopf.
"""

from . import dataset, deployment, modelversion, trainingrun

__all__ = ["dataset", "deployment", "modelversion", "trainingrun"]
