"""Why a model artifact was refused."""

from __future__ import annotations


class ModelArtifactError(Exception):
    """A model artifact could not be loaded; ``reason`` is one CamelCase word."""

    reason = "ModelArtifactError"


class ArtifactMismatch(ModelArtifactError):
    """The bytes are not the ones that were recorded: nothing was deserialized."""

    reason = "ArtifactMismatch"

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"model artifact sha256 mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class UntrustedArtifact(ModelArtifactError):
    """The artifact names types outside the allowlist: nothing was constructed."""

    reason = "UntrustedArtifact"

    def __init__(self, types: list[str]) -> None:
        super().__init__(f"model artifact contains untrusted types: {', '.join(types)}")
        self.types = types


class CorruptArtifact(ModelArtifactError):
    """The bytes hash correctly but are not a skops archive skops can read."""

    reason = "CorruptArtifact"
