"""Deployment settings the DAG files read when the scheduler parses them.

Only defaults live here: every one can be overridden per run through the DAG's
params (the trigger form in the UI, or `run_conf`). The paths default to this
repository's layout, so the DAGs work from a checkout without configuration.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CARD = os.environ.get("MLOPS_CARD", str(REPO / "model_card.yaml"))
"""The model card: model name, dataset and source, promotion floors."""

WORK_ROOT = os.environ.get("MLOPS_WORK_DIR",
                           str(Path(tempfile.gettempdir()) / "mlops-airflow"))
"""Where training runs hand data between tasks (one folder per DAG run, removed after)."""

TRAINING_SCHEDULE = os.environ.get("MLOPS_TRAINING_SCHEDULE", "@weekly") or None
"""Cron or preset of the training DAG; an empty value means trigger by hand only."""

INFERENCE_SCHEDULE = os.environ.get("MLOPS_INFERENCE_SCHEDULE", "@daily") or None
"""Cron or preset of the inference DAG; an empty value means trigger by hand only."""

SERVING_URL = os.environ.get("MLOPS_SERVING_URL", "http://127.0.0.1:8000")
"""The serving API that scores batches (the ALB's URL in the cloud)."""

BATCH_INPUT = os.environ.get("MLOPS_BATCH_INPUT", "")
"""The batch to score: a CSV/Parquet path or an s3:// URI."""

SCORES_DIR = os.environ.get("MLOPS_SCORES_DIR", str(REPO / ".mlops" / "scores"))
"""Where scores go, one file per logical date: a folder or an s3:// prefix."""

SPARK_MASTER = os.environ.get("MLOPS_SPARK_MASTER", "local[*]")
"""Where the inference DAG's spark engine runs: Spark in the worker by default."""
