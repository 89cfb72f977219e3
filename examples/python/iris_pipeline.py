"""The iris pipeline from Python: data -> training -> model version -> predictions.

The same three objects as examples/iris/, built with the typed models of kubeml.api and
driven with kubeml.client, against the cluster of your current kubeconfig (like kubectl):

    python examples/python/iris_pipeline.py [--namespace NS] [--report iris-report.html]

Reading trials and the model report needs the namespace's S3 settings in the
environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, KUBEML_BUCKET;
`eval "$(kubeml local env)"` sets them for the local cluster). Each step prints its
progress; the last line holds the predictions.
"""

from __future__ import annotations

import argparse

from kubeml.api import Dataset, Deployment, ModelVersion, TrainingRun
from kubeml.api.base import ObjectMeta
from kubeml.api.dataset import BuiltinSource, DatasetSpec, DataSource, Split
from kubeml.api.deployment import DeploymentSpec
from kubeml.api.trainingrun import (
    DatasetRef,
    Estimator,
    Gates,
    Search,
    Threshold,
    TrainingRunSpec,
)
from kubeml.client import Client
from kubeml.lineage import render

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", "-n", help="default: the kubeconfig context's")
    parser.add_argument("--report", help="write the model report (HTML) to this file")
    parser.add_argument("--replicas", type=int, default=2)
    args = parser.parse_args()
    kml = Client(args.namespace)

    # 1. The data: scikit-learn's iris, split 60/20/20 (stratified, seeded).
    kml.apply(
        Dataset(
            metadata=ObjectMeta(name="iris"),
            spec=DatasetSpec(
                source=DataSource(builtin=BuiltinSource(name="iris")),
                target="target",
                split=Split(validation=0.2, test=0.2, seed=42, stratify=True),
            ),
        )
    )
    dataset = kml.wait(Dataset, "iris", timeout=300)
    assert dataset.status is not None
    print(f"dataset iris: version {dataset.status.version}, rows {dataset.status.rows}")

    # 2. Train and tune a random forest; a version exists only if accuracy >= 0.85.
    kml.apply(
        TrainingRun(
            metadata=ObjectMeta(name="iris-rf"),
            spec=TrainingRunSpec(
                dataset_ref=DatasetRef(name="iris"),
                model="iris-classifier",
                estimator=Estimator(name="random-forest-classifier", params={"random_state": 0}),
                search=Search(folds=3, space={"n_estimators": [25, 50], "max_depth": [3, None]}),
                metrics=["accuracy", "f1_macro"],
                gates=Gates(thresholds=[Threshold(metric="accuracy", min=0.85)]),
            ),
        )
    )
    run = kml.wait(TrainingRun, "iris-rf", timeout=900)
    assert run.status is not None
    print(f"metrics: {kml.metrics('iris-rf')}")
    print(f"best parameters: {run.status.best_params}")
    trials = kml.trials("iris-rf")
    print("trials, best first:")
    print(trials[["rank", "params", "mean_score", "std_score"]].to_string(index=False))

    # 3. The version the run registered (the model's first becomes its champion).
    name = str(run.status.model_version)
    version = kml.wait(ModelVersion, name, timeout=120)
    print(f"model version {name}: {version.spec.key_metric}, aliases {version.spec.aliases}")
    if args.report:
        kml.report(name, args.report)
        print(f"model report written to {args.report}")

    # 4. Serve the champion and ask it.
    kml.apply(
        Deployment(
            metadata=ObjectMeta(name="iris"),
            spec=DeploymentSpec(model="iris-classifier", alias="champion", replicas=args.replicas),
        )
    )
    kml.wait(Deployment, "iris", timeout=600)
    # 5. Where that answer comes from: data version -> run -> model version -> deployment.
    print(render(kml.lineage("deployment/iris")))
    predictions = kml.predict("iris", ROWS)
    print(f"predictions for {ROWS}: {predictions}")


if __name__ == "__main__":
    main()
