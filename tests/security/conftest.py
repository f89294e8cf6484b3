"""The tracking server's auth plugin, imported from where both deployments run it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[2] / "infra" / "tracking_image" / "mlops_auth.py"
_spec = importlib.util.spec_from_file_location("mlops_auth", PLUGIN)
assert _spec is not None
assert _spec.loader is not None
mlops_auth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mlops_auth)
