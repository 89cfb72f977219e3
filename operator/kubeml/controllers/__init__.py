"""Per kind: observe (from the cache and S3), decide (kubeml.reconcile), hand the
outcome to the driver; and what to watch. No kopf here: ``kubeml.manager`` wires
the watches to kopf."""

from . import dataset, deployment, registry, trainingrun
from .watches import POLLED, WATCHES, Watch

CONTROLLERS = {
    c.kind: c
    for c in (
        dataset.CONTROLLER,
        trainingrun.CONTROLLER,
        registry.CONTROLLER,
        deployment.CONTROLLER,
    )
}

__all__ = ["CONTROLLERS", "POLLED", "WATCHES", "Watch"]
