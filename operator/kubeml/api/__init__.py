"""The four KubeML kinds (group kubeml.io, version v1alpha1) as pydantic models.

These models are the single source of truth: ``kubeml.crdgen`` turns them into
the CRDs in ``crds/``, and the operator parses every object through them.
"""

from .base import API_VERSION, GROUP, VERSION, Condition
from .dataset import Dataset, DatasetSpec, DatasetStatus
from .deployment import Deployment, DeploymentSpec, DeploymentStatus
from .modelversion import ModelVersion, ModelVersionSpec, ModelVersionStatus
from .resource import Resource
from .trainingrun import TrainingRun, TrainingRunSpec, TrainingRunStatus
from .validate import KINDS, ManifestError, parse_manifest, validate_update

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "Condition",
    "Dataset",
    "DatasetSpec",
    "DatasetStatus",
    "Deployment",
    "DeploymentSpec",
    "DeploymentStatus",
    "ManifestError",
    "ModelVersion",
    "ModelVersionSpec",
    "ModelVersionStatus",
    "Resource",
    "TrainingRun",
    "TrainingRunSpec",
    "TrainingRunStatus",
    "parse_manifest",
    "validate_update",
]
