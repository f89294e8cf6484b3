"""The ML stages: datasets, data preparation, features, training, evaluation, batch scoring.

Stages know no registry conventions, no card and no commands (what they may import is
the table in docs/architecture.md, enforced by tests/layout), so the notebook, the DAGs
and the CLI compose them the same way.
"""

MODEL_ARTIFACT = "model"
"""The name a stage logs the model under in its run (`runs:/<run_id>/model`); kept here,
light to import, because the registry conventions build on it."""
DEFAULT_ESTIMATOR = "hist_gradient_boosting"
"""What `mlops train` fits unless told otherwise; here, light to import, for the CLI's
and the training DAG's defaults."""
