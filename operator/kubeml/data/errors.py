"""DataError: a data problem with a condition reason and every failed check."""

from __future__ import annotations

from collections.abc import Sequence


class DataError(Exception):
    """A failure of the data itself or its source.

    ``reason`` is one CamelCase word (a Kubernetes condition reason); ``message``
    names the column, URL, bucket or key; ``failures`` lists each failed check when
    there are several (validation). ``transient`` says whether a retry may help
    (an unreachable source may come back; a malformed file will not).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        failures: Sequence[str] = (),
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.failures = list(failures)
        self.transient = transient

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"
