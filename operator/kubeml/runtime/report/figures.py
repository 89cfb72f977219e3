"""The report's figures: matplotlib (Agg, no display) rendered to inline SVG.

Each function takes plain arrays and returns an SVG element as text, ready to be
placed in HTML. Text stays text (``svg.fonttype: none``): smaller, selectable, and
drawn by the viewer's own sans-serif font. The SVG carries no metadata (matplotlib
would otherwise write its home page and the date into it) and ids salted per figure,
so several figures on one page never share an id and the same data gives the same
bytes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: a Job has no display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

STYLE: Any = {  # matplotlib types rc keys as literals
    "svg.fonttype": "none",
    "font.size": 9,
    "font.family": "sans-serif",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
ACCENT = "#1f6feb"
PASS = "#2da44e"
MUTED = "#8c959f"
# The SVG's own prologue (XML declaration, DOCTYPE, comments) does not belong in HTML.
_PROLOGUE = re.compile(r"\A.*?(?=<svg)", re.DOTALL)


@contextmanager
def figure(width: float, height: float, salt: str) -> Iterator[Figure]:
    rc: Any = {**STYLE, "svg.hashsalt": salt}
    with plt.rc_context(rc):
        fig = plt.figure(figsize=(width, height), layout="constrained")
        try:
            yield fig
        finally:
            plt.close(fig)


def svg(fig: Figure) -> str:
    """The figure as an <svg> element; call it inside ``figure`` (its salt applies when
    saving)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None})
    return _PROLOGUE.sub("", buf.getvalue()).strip()


def _short(label: Any, width: int = 28) -> str:
    text = str(label)
    return text if len(text) <= width else text[: width - 1] + "…"


def histograms(columns: Sequence[tuple[str, np.ndarray | None, dict[str, int] | None]]) -> str:
    """Small multiples: a histogram per numeric feature, the top counts per categorical
    one. ``columns`` holds (name, numeric values or None, category counts or None)."""
    n = len(columns)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    with figure(2.3 * cols, 1.7 * rows, "histograms") as fig:
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, (name, values, counts) in zip(axes, columns, strict=False):
            ax.set_title(_short(name), fontsize=8)
            if values is not None:
                finite = values[np.isfinite(values)]
                ax.hist(finite, bins=min(30, max(5, len(np.unique(finite)))), color=ACCENT)
            elif counts:
                labels = [_short(k, 12) for k in counts]
                ax.barh(labels[::-1], list(counts.values())[::-1], color=ACCENT)
            ax.tick_params(labelsize=7)
        for ax in axes[n:]:
            ax.set_visible(False)
        return svg(fig)


def trial_scores(
    candidates: Sequence[int], means: Sequence[float], stds: Sequence[float], best: int, metric: str
) -> str:
    """Every candidate's mean cross-validated score with its spread over the folds."""
    with figure(7.0, 2.8, "trials") as fig:
        ax = fig.subplots()
        x = np.asarray(candidates)
        colors = [PASS if c == best else ACCENT for c in candidates]
        ax.errorbar(x, means, yerr=stds, fmt="none", ecolor=MUTED, capsize=2, zorder=1)
        ax.scatter(x, means, c=colors, s=18, zorder=2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("candidate")
        ax.set_ylabel(f"mean CV {metric}")
        ax.set_title(f"{len(candidates)} trials (best: candidate {best}, in green)")
        return svg(fig)


def confusion(matrix: np.ndarray, labels: Sequence[Any]) -> str:
    size = max(3.0, min(7.0, 0.6 * len(labels) + 2))
    with figure(size, size * 0.85, "confusion") as fig:
        ax = fig.subplots()
        ax.grid(False)
        # A mesh of vector cells, not imshow: imshow would embed a PNG in the SVG.
        mesh = ax.pcolormesh(matrix, cmap="Blues", edgecolors="white", linewidth=0.5)
        ax.invert_yaxis()
        ax.set_aspect("equal")
        bar = fig.colorbar(mesh, ax=ax, shrink=0.8)
        if bar.solids is not None:
            bar.solids.set_rasterized(False)  # colorbars rasterize many-step scales
        ticks = [i + 0.5 for i in range(len(labels))]
        names = [_short(label, 14) for label in labels]
        ax.set_xticks(ticks, names, rotation=45 if len(labels) > 4 else 0)
        ax.set_yticks(ticks, names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        if len(labels) <= 20:
            peak = matrix.max() if matrix.size else 0
            for (i, j), value in np.ndenumerate(matrix):
                color = "white" if peak and value > peak / 2 else "black"
                ax.text(
                    j + 0.5, i + 0.5, str(value), ha="center", va="center", color=color, fontsize=8
                )
        return svg(fig)


def curves(
    kind: str,
    lines: Sequence[tuple[str, np.ndarray, np.ndarray, float]],
    *,
    x_label: str,
    y_label: str,
    diagonal: bool,
) -> str:
    """ROC or precision-recall curves, one line per class, the area in the legend."""
    with figure(3.8, 3.3, kind) as fig:
        ax = fig.subplots()
        for label, x, y, area in lines:
            ax.plot(x, y, lw=1.4, label=f"{_short(label, 16)} ({area:.3f})")
        if diagonal:
            ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color=MUTED)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.legend(fontsize=7, loc="lower right" if diagonal else "lower left")
        return svg(fig)


def residuals(y_true: np.ndarray, y_pred: np.ndarray) -> str:
    """Predicted against actual, residuals against predicted, and their distribution."""
    resid = y_true - y_pred
    with figure(10.0, 3.2, "residuals") as fig:
        a, b, c = fig.subplots(1, 3)
        low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
        a.scatter(y_true, y_pred, s=8, alpha=0.6, color=ACCENT)
        a.plot([low, high], [low, high], ls="--", lw=0.8, color=MUTED)
        a.set_xlabel("actual")
        a.set_ylabel("predicted")
        a.set_title("predicted vs actual")
        b.scatter(y_pred, resid, s=8, alpha=0.6, color=ACCENT)
        b.axhline(0, ls="--", lw=0.8, color=MUTED)
        b.set_xlabel("predicted")
        b.set_ylabel("actual - predicted")
        b.set_title("residuals vs predicted")
        c.hist(resid, bins=30, color=ACCENT)
        c.set_xlabel("actual - predicted")
        c.set_title("residual distribution")
        return svg(fig)


def importances(names: Sequence[str], means: Sequence[float], stds: Sequence[float]) -> str:
    """Horizontal bars, the most important feature on top."""
    height = max(1.6, 0.28 * len(names) + 0.8)
    with figure(6.0, height, "importance") as fig:
        ax = fig.subplots()
        y = np.arange(len(names))[::-1]
        ax.barh(y, means, xerr=stds, color=ACCENT, ecolor=MUTED, capsize=2)
        ax.set_yticks(list(y), [_short(n, 32) for n in names])
        ax.axvline(0, lw=0.8, color=MUTED)
        ax.set_xlabel("drop in score when the feature is shuffled")
        return svg(fig)
