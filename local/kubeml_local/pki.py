"""Certificates and keys for the local control plane, made with ``cryptography``.

Identities (the apiserver reads users from CN and groups from O):
- ``kubeml-admin`` in ``system:masters``: the admin kubeconfig used by people and tests.
- ``system:kube-controller-manager``: the controller manager; with
  ``--use-service-account-credentials`` each controller then runs under its own
  service account, bound by the apiserver's bootstrap RBAC policy.
- ``kube-apiserver-kubelet-client`` in ``kubeml:kubelet-api``: the apiserver when it calls
  the node agent's kubelet API (logs); the agent serves only this identity.
- ``system:node:<node>`` in ``system:nodes`` *and* ``system:masters``: the node agent. A real
  kubelet's rights (Node authorizer) do not cover what the agent does in place of a
  scheduler and kubelet together (POST pods/binding for any pending pod, read every
  Secret/ConfigMap a pod mounts, create service-account tokens), so it gets admin rights.
  The node name in CN keeps its requests attributable in audit and managedFields. The
  NodeRestriction admission plugin is not in the default set, so the group mix is harmless.

Files are reused across restarts so that kubeconfigs handed out earlier stay valid; a
missing CA regenerates everything, and a leaf near expiry is reissued.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=7)

ADMIN_USER = "kubeml-admin"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
KUBELET_CLIENT_GROUP = "kubeml:kubelet-api"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Pki:
    """Paths of every file this module writes."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    @property
    def kubelet_cert(self) -> Path:
        """The node agent's serving certificate for its kubelet API."""
        return self.dir / "kubelet.crt"

    @property
    def kubelet_key(self) -> Path:
        return self.dir / "kubelet.key"

    @property
    def apiserver_kubelet_client(self) -> tuple[Path, Path]:
        return self.client("apiserver-kubelet-client")

    def client(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys are instant to make; the apiserver accepts them for TLS and client auth.
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600, exist_ok=True)
    path.write_bytes(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TypeError(f"unexpected key type in {path}")
    return key


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _fresh(cert_path: Path, key_path: Path) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    return _load_cert(cert_path).not_valid_after_utc - _now() > RENEW_BEFORE


def _name(cn: str, orgs: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: object, days: int
) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        # Backdated a little so a clock step right after `up` does not break TLS.
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _make_ca(pki: Pki) -> None:
    key = _new_key()
    name = _name("kubeml-local-ca")
    cert = (
        _builder(name, name, key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write_key(pki.ca_key, key)
    _write_cert(pki.ca_cert, cert)


def _issue(
    pki: Pki,
    cert_path: Path,
    key_path: Path,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: Sequence[x509.GeneralName] = (),
) -> None:
    ca_key = _load_key(pki.ca_key)
    ca_cert = _load_cert(pki.ca_cert)
    key = _new_key()
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(key_path, key)
    _write_cert(cert_path, cert)


def apiserver_sans(service_ip: str) -> list[x509.GeneralName]:
    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    ips = ["127.0.0.1", "::1", service_ip]
    return [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]


def _ensure_sa_keys(pki: Pki) -> None:
    if pki.sa_key.exists() and pki.sa_pub.exists():
        return
    # RSA because every JWT consumer verifies RS256; ECDSA tokens are less widely accepted.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki.sa_key, key)
    pki.sa_pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def agent_orgs() -> list[str]:
    return ["system:nodes", "system:masters"]


def kubelet_sans(node_name: str, node_ip: str) -> list[x509.GeneralName]:
    """The apiserver dials the node's InternalIP and checks it against these."""
    return [x509.DNSName(node_name), x509.IPAddress(ipaddress.ip_address(node_ip))]


def ensure_pki(
    pki_dir: Path, *, node_name: str, service_ip: str, node_ip: str = "127.0.0.1"
) -> Pki:
    """Create whatever is missing or near expiry; return the paths."""
    pki = Pki(pki_dir)
    pki_dir.mkdir(parents=True, exist_ok=True)
    if not (pki.ca_cert.exists() and pki.ca_key.exists()):
        for stale in pki_dir.glob("*.crt"):
            stale.unlink()
        _make_ca(pki)
    server = ExtendedKeyUsageOID.SERVER_AUTH
    client = ExtendedKeyUsageOID.CLIENT_AUTH
    if not _fresh(pki.apiserver_cert, pki.apiserver_key) or not _has_san(
        pki.apiserver_cert, service_ip
    ):
        _issue(
            pki,
            pki.apiserver_cert,
            pki.apiserver_key,
            _name("kube-apiserver"),
            server,
            apiserver_sans(service_ip),
        )
    if not _fresh(pki.kubelet_cert, pki.kubelet_key) or not _has_san(pki.kubelet_cert, node_ip):
        _issue(
            pki,
            pki.kubelet_cert,
            pki.kubelet_key,
            _name(f"system:node:{node_name}", ["system:nodes"]),
            server,
            kubelet_sans(node_name, node_ip),
        )
    clients = {
        "apiserver-kubelet-client": _name(KUBELET_CLIENT_USER, [KUBELET_CLIENT_GROUP]),
        "admin": _name(ADMIN_USER, ["system:masters"]),
        "controller-manager": _name(CONTROLLER_MANAGER_USER),
        "agent": _name(f"system:node:{node_name}", agent_orgs()),
    }
    for name, subject in clients.items():
        crt, key = pki.client(name)
        if not _fresh(crt, key) or _load_cert(crt).subject != subject:
            _issue(pki, crt, key, subject, client)
    _ensure_sa_keys(pki)
    return pki


def _has_san(cert_path: Path, ip: str) -> bool:
    sans = _load_cert(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return ipaddress.ip_address(ip) in sans.value.get_values_for_type(x509.IPAddress)
