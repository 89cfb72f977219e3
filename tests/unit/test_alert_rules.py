"""The generated alerting rules are valid Prometheus rules (checked by the real promtool)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from kubeml.api.deployment import Alerts
from kubeml.reconcile import server_objects
from tests.support.binaries import built


def test_generated_rules_pass_promtool(tmp_path: Path) -> None:
    rules = server_objects.alert_rules(
        "iris",
        "ml",
        "iris-classifier",
        Alerts(error_rate=0.01, latency_p99_seconds=0.25, drift_psi=0.3),
    )
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "kubeml-iris", "rules": rules}]}))
    promtool = built("prometheus") / "promtool"
    out = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 rules found" in out.stdout


def test_rules_name_the_thresholds() -> None:
    rules = server_objects.alert_rules(
        "iris", "ml", "m", Alerts(error_rate=0.02, latency_p99_seconds=0.3, drift_psi=0.4)
    )
    exprs = {r["alert"]: r["expr"] for r in rules}
    assert exprs["KubeMLHighErrorRate"].endswith("> 0.02")
    assert exprs["KubeMLHighLatency"].endswith("> 0.3")
    assert exprs["KubeMLFeatureDrift"].endswith("> 0.4")


def test_live_quality_rules_only_where_a_threshold_is_set(tmp_path: Path) -> None:
    plain = server_objects.alert_rules("iris", "ml", "m", Alerts())
    assert not {r["alert"] for r in plain} & {"KubeMLLowLiveAccuracy", "KubeMLHighLiveError"}
    rules = server_objects.alert_rules(
        "iris", "ml", "m", Alerts(live_accuracy=0.9, live_mae=2.5, min_labelled_rows=100)
    )
    exprs = {r["alert"]: r["expr"] for r in rules}
    assert "kubeml_live_accuracy" in exprs["KubeMLLowLiveAccuracy"]
    assert "< 0.9" in exprs["KubeMLLowLiveAccuracy"]
    assert ">= 100" in exprs["KubeMLLowLiveAccuracy"]
    assert "> 2.5" in exprs["KubeMLHighLiveError"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "kubeml-iris", "rules": rules}]}))
    promtool = built("prometheus") / "promtool"
    out = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 rules found" in out.stdout


def test_a_shadow_agreement_rule_only_where_a_threshold_is_set(tmp_path: Path) -> None:
    plain = server_objects.alert_rules("iris", "ml", "m", Alerts())
    assert "KubeMLLowShadowAgreement" not in {r["alert"] for r in plain}
    rules = server_objects.alert_rules("iris", "ml", "m", Alerts(shadow_agreement=0.9))
    exprs = {r["alert"]: r["expr"] for r in rules}
    assert "kubeml_shadow_rows_agreed_total" in exprs["KubeMLLowShadowAgreement"]
    assert "< 0.9" in exprs["KubeMLLowShadowAgreement"]
    assert ">= 100" in exprs["KubeMLLowShadowAgreement"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "kubeml-iris", "rules": rules}]}))
    promtool = built("prometheus") / "promtool"
    out = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5 rules found" in out.stdout
