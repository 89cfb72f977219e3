"""Where the artifact store is, read from the environment pods receive."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import CredentialsMissing

DEFAULT_REGION = "us-east-1"
DEFAULT_BUCKET = "kubeml"
_FALSE = {"0", "false", "no", "off"}
_TRUE = {"1", "true", "yes", "on", ""}


@dataclass(frozen=True)
class S3Settings:
    """Endpoint, region, bucket and TLS verification of one S3 service.

    Credentials are deliberately not a field: they come only from environment
    variables (``<prefix>AWS_ACCESS_KEY_ID`` / ``<prefix>AWS_SECRET_ACCESS_KEY``), which
    pods receive through ``secretKeyRef``. Nothing else in boto3's chain is consulted,
    so a pod without keys fails clearly instead of querying a metadata service.
    """

    bucket: str = DEFAULT_BUCKET
    endpoint_url: str | None = None
    region: str = DEFAULT_REGION
    # True, False, or the path of a CA bundle (KUBEML_S3_VERIFY=/etc/ssl/minio-ca.pem).
    verify_tls: bool | str = True
    # "" reads AWS_ACCESS_KEY_ID; "KUBEML_SOURCE_" reads KUBEML_SOURCE_AWS_ACCESS_KEY_ID.
    credentials_env_prefix: str = ""
    # botocore "standard" retry mode: exponential back-off with jitter on
    # throttling, 5xx and connection errors, max_attempts counting the first try.
    max_attempts: int = 5
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    # Path-style URLs work with every S3 clone (MinIO, SeaweedFS) and with endpoints
    # whose host name cannot take a bucket sub-domain (IP addresses, service names).
    addressing_style: str = "path"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Settings:
        e = os.environ if env is None else env
        endpoint = e.get("AWS_ENDPOINT_URL_S3") or e.get("AWS_ENDPOINT_URL") or None
        return cls(
            bucket=e.get("KUBEML_BUCKET") or DEFAULT_BUCKET,
            endpoint_url=endpoint,
            region=e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            verify_tls=parse_verify(e.get("KUBEML_S3_VERIFY", "true")),
            # Without a custom endpoint this is AWS itself, where virtual-hosted is the norm.
            addressing_style=e.get("KUBEML_S3_ADDRESSING_STYLE")
            or ("path" if endpoint else "auto"),
            max_attempts=_int(e.get("KUBEML_S3_MAX_ATTEMPTS"), cls.max_attempts),
        )

    def credentials(self, env: Mapping[str, str] | None = None) -> tuple[str, str, str | None]:
        """(access key id, secret key, session token) from the environment."""
        e = os.environ if env is None else env
        p = self.credentials_env_prefix
        access = e.get(f"{p}AWS_ACCESS_KEY_ID")
        secret = e.get(f"{p}AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            raise CredentialsMissing(
                f"bucket {self.bucket}: no S3 credentials in the environment "
                f"(set {p}AWS_ACCESS_KEY_ID and {p}AWS_SECRET_ACCESS_KEY)",
                bucket=self.bucket,
            )
        return access, secret, e.get(f"{p}AWS_SESSION_TOKEN") or None


def _int(raw: str | None, default: int) -> int:
    try:
        return max(1, int(raw)) if raw else default
    except ValueError:
        return default


def parse_verify(value: str) -> bool | str:
    v = value.strip()
    if v.lower() in _FALSE:
        return False
    if v.lower() in _TRUE:
        return True
    return v  # a CA bundle path
