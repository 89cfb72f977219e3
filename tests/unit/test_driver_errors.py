"""How the driver tells API failures apart: a namespace being deleted is not a failure."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from kubeml.driver.engine import describe_error, namespace_terminating


def api_error(status: int, reason: str, message: str) -> ApiException:
    err = ApiException(status=status, reason=reason)
    err.body = json.dumps({"kind": "Status", "status": "Failure", "message": message})
    return err


def test_a_write_into_a_terminating_namespace_is_recognised() -> None:
    err = api_error(
        403,
        "Forbidden",
        'services "iris" is forbidden: unable to create new content in namespace ml '
        "because it is being terminated",
    )
    assert namespace_terminating(err)


def test_an_rbac_denial_is_a_failure_and_says_what_was_denied() -> None:
    err = api_error(
        403,
        "Forbidden",
        'ingresses.networking.k8s.io is forbidden: User "system:serviceaccount:k:op" '
        'cannot list resource "ingresses"',
    )
    assert not namespace_terminating(err)
    assert describe_error(err).startswith("Kubernetes API answered 403 Forbidden: ingresses")
    assert not namespace_terminating(ValueError("x"))
    bare = ApiException(status=500, reason="Internal Server Error")
    assert describe_error(bare) == "Kubernetes API answered 500 Internal Server Error"
