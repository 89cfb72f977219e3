"""Label and annotation keys: lineage readable with `kubectl get -l`."""

PREFIX = "kubeml.io"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "kubeml"
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"

DATASET = f"{PREFIX}/dataset"
DATASET_VERSION = f"{PREFIX}/dataset-version"
TRAINING_RUN = f"{PREFIX}/training-run"
MODEL = f"{PREFIX}/model"
VERSION = f"{PREFIX}/version"
DEPLOYMENT = f"{PREFIX}/deployment"
# stable, canary or shadow: which server Deployment of a kubeml.io Deployment a pod belongs to
TRACK = f"{PREFIX}/track"
# VERSION/STEP: approves a rollout's manual gates (a kubectl shortcut for
# spec.rollout.approval).
APPROVED_STEP = f"{PREFIX}/approved-step"
OWNER_KIND = f"{PREFIX}/owner-kind"
OWNER_NAME = f"{PREFIX}/owner-name"
RETRAINING_FOR = f"{PREFIX}/retraining-for"
TRIGGER = f"{PREFIX}/trigger"

# Annotation: a time (RFC 3339); a Dataset re-prepares once for each new value.
REFRESH_REQUESTED = f"{PREFIX}/refresh-requested"

# Annotation on objects the operator applies: the hash of the manifest as last
# applied, so an unchanged reconcile skips the request.
APPLIED_HASH = f"{PREFIX}/applied-hash"

FIELD_MANAGER = "kubeml-operator"


def short(value: str, n: int = 12) -> str:
    """Label values are at most 63 characters; hashes are shortened for them."""
    return value[:n]
