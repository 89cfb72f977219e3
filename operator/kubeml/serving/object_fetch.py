"""Reading the artifact and the profile from S3 in a short-lived child process.

boto3 and botocore (its service models held as Python objects) cost the server
about 25 MB of resident memory for the rest of its life, for a few reads at start.
The child reads one object and writes its bytes to stdout; the server re-hashes
them before anything parses them, so the child is trusted with nothing. A failure
comes back as one JSON line on stderr: reason, message and whether it may pass.

    python -m kubeml.serving.object_fetch s3://bucket/key
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ERROR_PREFIX = "KUBEML_FETCH_ERROR "
EXIT_FAILED = 3
TIMEOUT_S = 600.0


class FetchError(Exception):
    """An object could not be read; ``reason`` is one CamelCase word."""

    def __init__(self, reason: str, message: str, transient: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.transient = transient


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise FetchError("InvalidURI", f"{uri!r} is not an s3://bucket/key URI", False)
    return bucket, key


class ChildReader:
    """Reads objects through ``python -m kubeml.serving.object_fetch``."""

    def read(self, uri: str) -> bytes:
        split_uri(uri)
        try:
            done = subprocess.run(
                [sys.executable, "-m", __name__, uri],
                capture_output=True,
                timeout=TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise FetchError("Timeout", f"reading {uri} took over {TIMEOUT_S:g}s", True) from None
        if done.returncode == 0:
            return done.stdout
        for line in reversed(done.stderr.decode("utf-8", "replace").splitlines()):
            if line.startswith(ERROR_PREFIX):
                doc = json.loads(line[len(ERROR_PREFIX) :])
                raise FetchError(doc["reason"], doc["message"], bool(doc["transient"]))
        tail = done.stderr.decode("utf-8", "replace")[-500:]
        raise FetchError("FetchFailed", f"reading {uri}: exit {done.returncode}: {tail}", True)


@dataclass
class StoreReader:
    """Reads in this process through stores made per bucket (tests, tools)."""

    store_for: Callable[[str], Any]

    def read(self, uri: str) -> bytes:
        from ..storage import StorageError

        bucket, key = split_uri(uri)
        try:
            data: bytes = self.store_for(bucket).get_bytes(key)
        except StorageError as err:
            raise FetchError(err.reason, err.message, err.transient) from err
        return data


def main(argv: list[str] | None = None) -> int:
    from dataclasses import replace

    from ..storage import ArtifactStore, S3Settings, StorageError

    (uri,) = argv if argv is not None else sys.argv[1:]
    try:
        bucket, key = split_uri(uri)
        store = ArtifactStore(replace(S3Settings.from_env(), bucket=bucket))
        data = store.get_bytes(key)
    except (StorageError, FetchError) as err:
        doc = {"reason": err.reason, "message": err.message, "transient": err.transient}
        print(ERROR_PREFIX + json.dumps(doc), file=sys.stderr, flush=True)
        return EXIT_FAILED
    except Exception as err:  # settings missing, a bug: the server retries and says so
        doc = {
            "reason": "FetchFailed",
            "message": f"{type(err).__name__}: {err}",
            "transient": True,
        }
        print(ERROR_PREFIX + json.dumps(doc), file=sys.stderr, flush=True)
        return EXIT_FAILED
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
