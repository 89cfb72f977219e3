"""The model report: one self-contained HTML page per trained model.

``render(ReportInput) -> str`` is all there is: the data (rows per split, a profile
per feature), the search (every trial's score), the chosen parameters, the metrics
per split with the gates and their outcome, a confusion matrix with ROC and PR curves
(classifiers) or residual plots (regressors), and permutation feature importances.
No JavaScript, no network: figures are inline SVG drawn by matplotlib.

It reads nothing and writes nothing; the training Job gives it what it measured and
uploads the page (``kubeml.runtime.training.report``).
"""

from __future__ import annotations

from .render import SECTIONS, GateOutcome, ReportInput, TrialRow, render

__all__ = ["SECTIONS", "GateOutcome", "ReportInput", "TrialRow", "render"]
