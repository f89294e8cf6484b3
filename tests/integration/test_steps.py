"""The training DAG's steps in the main environment, against a real MLflow server."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline import steps
from pipeline.card import load_card
from pipeline.data import prepare
from pipeline.datasets import load_spec
from pipeline.errors import ConfigError, NegativeVerdict
from tests.conftest import TrackingServer
from tests.utils import REPO

pytestmark = pytest.mark.integration


def test_work_dir_names_are_safe_folder_names(tmp_path: Path) -> None:
    run_key = "manual__2026-11-27T17:58:59.501757+00:00"
    assert steps.work_dir_for(tmp_path, run_key) == \
        tmp_path / "manual__2026-11-27T17_58_59.501757_00_00"
    assert steps.work_dir_for(tmp_path, "../..").parent == tmp_path


def test_steps_hand_over_through_files_and_a_weak_model_stops_at_the_floors(
        tracking_env: TrackingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_EXPERIMENT", "steps-test")
    card = REPO / "model_card.yaml"
    work = tmp_path / "run"
    with pytest.raises(ConfigError, match="no prepared data"):
        steps.features_step(card_path=card, work_dir=work)

    prepared = steps.prepare_step(card_path=card, work_dir=work)
    reloaded = steps.load_prepared(load_card(card), work)
    direct = prepare(load_spec("diamonds"))
    pd.testing.assert_frame_equal(reloaded.train, direct.train)
    pd.testing.assert_frame_equal(reloaded.holdout, direct.holdout)
    assert prepared["data_hash"] == direct.data_hash == reloaded.data_hash

    features = steps.features_step(card_path=card, work_dir=work)
    assert features["features_in"] == 9
    assert features["features_out"] > 9  # one-hot columns

    trained = steps.train_step(card_path=card, work_dir=work, estimator="dummy", params={})
    with pytest.raises(NegativeVerdict, match=r"r2 is .*, the card's floor is at least 0\.9"):
        steps.evaluate_step(card_path=card, work_dir=work, run_id=trained["run_id"])
    assert steps.cleanup_step(work_dir=work) == {"work_dir": str(work), "removed": True}
    assert not work.exists()
