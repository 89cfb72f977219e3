"""`kubeml promote` refused: the apiserver's message reaches the user."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from kubeml.k8s.aliases import api_message


def refusal(body: str | None) -> ApiException:
    err = ApiException(status=403, reason="Forbidden")
    err.body = body
    return err


def test_the_policys_message_is_shown() -> None:
    message = "user alice may not change the aliases of modelversion m-v2 in namespace ml: ..."
    body = json.dumps({"kind": "Status", "reason": "Forbidden", "message": message})
    assert api_message(refusal(body)) == message


def test_without_a_status_body_the_reason_is_shown() -> None:
    assert api_message(refusal(None)) == "Forbidden"
    assert api_message(refusal("<html>proxy error</html>")) == "Forbidden"
    assert api_message(refusal(json.dumps(["not", "a", "status"]))) == "Forbidden"
