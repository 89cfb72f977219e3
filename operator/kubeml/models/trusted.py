"""The types a model artifact may contain.

skops already trusts plain data (int, str, list, dict...) and every public
scikit-learn estimator; these are the extra, non-estimator types that fitted
estimators of our allowlist (``kubeml.api.estimators``) carry. Anything else in
an artifact is refused before a single object is constructed.
"""

from __future__ import annotations

# Only the root modules these libraries live in may appear in an artifact at all,
# even among the types skops trusts by default.
TRUSTED_MODULE_ROOTS = frozenset({"builtins", "numpy", "scipy", "sklearn"})

_DISTANCES = (
    # The metrics KDTree/BallTree accept for k-NN. PyFuncDistance64 is deliberately
    # absent: it wraps an arbitrary Python callable.
    "BrayCurtis",
    "Canberra",
    "Chebyshev",
    "Dice",
    "Euclidean",
    "Hamming",
    "Haversine",
    "Jaccard",
    "Mahalanobis",
    "Manhattan",
    "Minkowski",
    "RogersTanimoto",
    "RussellRao",
    "SEuclidean",
    "SokalMichener",
    "SokalSneath",
)

TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        # Tree structures of decision trees, random forests and gradient boosting.
        "sklearn.tree._tree.Tree",
        # HistGradientBoosting's fitted trees. skops leaves it untrusted because a
        # crafted file can index out of bounds at predict time; we load only bytes
        # whose sha256 matches what our own trainer recorded, so a crafted file is
        # caught by the digest check before skops sees it.
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        # k-NN search structures and their distance metrics.
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        *(f"sklearn.metrics._dist_metrics.{name}Distance64" for name in _DISTANCES),
        *(f"sklearn.metrics._dist_metrics.{name}Distance32" for name in _DISTANCES),
    }
)


def refused(type_names: list[str] | set[str]) -> list[str]:
    """The names among ``type_names`` an artifact must not contain, sorted."""
    return sorted(
        t
        for t in set(type_names)
        if t not in TRUSTED_TYPES or t.split(".", 1)[0] not in TRUSTED_MODULE_ROOTS
    )


def foreign(type_names: list[str] | set[str]) -> list[str]:
    """Names from outside the trusted libraries, whatever skops trusts by default."""
    return sorted(t for t in set(type_names) if t.split(".", 1)[0] not in TRUSTED_MODULE_ROOTS)
