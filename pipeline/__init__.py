"""The ML stages and the GitOps logic on the MLflow registry, behind the `mlops` CLI."""

__version__ = "0.1.0"
