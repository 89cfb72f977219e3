"""TrainError: an expected failure of a training run, with its reason and exit code."""

from __future__ import annotations

# Exit codes shared with the operator's podFailurePolicy (kubeml.reconcile.jobs):
# a bad input fails the Job at once, a transient failure lets the Job retry.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_TRANSIENT = 3


class TrainError(Exception):
    """``reason`` is one CamelCase word (a condition reason); ``message`` names the
    dataset, column, parameter or key concerned."""

    def __init__(self, reason: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.transient = transient

    @property
    def exit_code(self) -> int:
        return EXIT_TRANSIENT if self.transient else EXIT_BAD_INPUT

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"
