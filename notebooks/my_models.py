"""Your own estimators for the experiment notebook: `my_models:extra_trees` and friends.

Each factory returns an **unfitted** scikit-learn estimator; the project wraps it in the
card's features, fits it, and stores it as data (skops, held to modelio/allowlist.yaml),
exactly as it does the built-in ones. Edit these, or add your own: anything built from
scikit-learn's estimators and numpy's listed functions is admitted (docs/models.md).
The CLI finds the same spelling in a `my_models.py` at the repository root:
`mlops train --estimator my_models:extra_trees`.
"""

from __future__ import annotations

from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor


def extra_trees() -> ExtraTreesRegressor:
    """Randomised trees: cheap to fit, a useful second opinion beside boosting."""
    return ExtraTreesRegressor(n_estimators=60, min_samples_leaf=3, max_features=0.8,
                               random_state=0)


def extra_trees_classifier() -> ExtraTreesClassifier:
    """The same idea for a classification card."""
    return ExtraTreesClassifier(n_estimators=60, min_samples_leaf=3, max_features=0.8,
                                random_state=0)
