"""Safe model artifacts: skops bytes, verified by sha256 and an allowlist of types."""

from .artifact import FORMAT, SUFFIX, load, save, save_file
from .errors import ArtifactMismatch, CorruptArtifact, ModelArtifactError, UntrustedArtifact
from .trusted import TRUSTED_MODULE_ROOTS, TRUSTED_TYPES

__all__ = [
    "FORMAT",
    "SUFFIX",
    "TRUSTED_MODULE_ROOTS",
    "TRUSTED_TYPES",
    "ArtifactMismatch",
    "CorruptArtifact",
    "ModelArtifactError",
    "UntrustedArtifact",
    "load",
    "save",
    "save_file",
]
