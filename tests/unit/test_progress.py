"""Stages and bars are drawn on a terminal only; elsewhere the library's calls are silent."""

from __future__ import annotations

import pytest

from pipeline import progress


def _work() -> None:
    with progress.stage("fitting hist_gradient_boosting on 8,000 rows"):
        pass
    with progress.steps("bootstrap resamples (rmse)", 2000) as advance:
        for _ in range(4):
            advance(500)


def test_on_a_terminal_each_stage_and_bar_is_drawn_on_stderr(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    with progress.shown_on_terminal():
        _work()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "fitting hist_gradient_boosting on 8,000 rows" in captured.err
    assert "bootstrap resamples (rmse)" in captured.err
    assert "2,000/2,000" in captured.err


def test_quiet_with_json_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    with progress.shown_on_terminal(quiet=True):
        _work()
    assert capsys.readouterr().err == ""


def test_off_a_terminal_nothing_is_drawn(capsys: pytest.CaptureFixture[str]) -> None:
    with progress.shown_on_terminal():  # pytest's stderr is not a terminal
        _work()
    assert capsys.readouterr().err == ""


def test_ci_is_never_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    monkeypatch.setenv("CI", "true")
    assert progress.on_terminal() is False
