"""The CLI's one translation point: every failure is one line and an exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import run
from tests.utils import REPO


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--bogus"], "error: No such option: --bogus"),
        (["status", "--card"], "error: Option '--card' requires an argument."),
        (["stack", "up", "--backend", "bogus"], "'bogus' is not one of 'sqlite', 'mysql'"),
        (["nocommand"], "error: No such command 'nocommand'."),
        (["predict", "--rows", "0"], "--rows"),
        (["propose", "not-a-run-id", "--card", "model_card.yaml"],
         "error: run ID 'not-a-run-id' is not a 32-character MLflow run ID"),
        (["train", "--card", "missing.yaml"], "error: missing.yaml: no such file"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(argv: list[str], expected: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert expected in err[0]
    assert "Traceback" not in err[0]


def test_an_invalid_card_names_the_field(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    card = tmp_path / "card.yaml"
    text = (REPO / "model_card.yaml").read_text().replace("confidence: 0.95", "confidence: 1.5")
    card.write_text(text)
    assert run(["train", "--card", str(card)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {card}: promotion.confidence: Input should be less than 1")


def test_a_card_with_the_old_holdout_fraction_names_the_keys_that_replace_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = tmp_path / "card.yaml"
    text = (REPO / "model_card.yaml").read_text()
    old = text.split("  validation_fraction:")[0] + "  holdout_fraction: 0.2\n" + \
        "\n".join(text.split("  test_fraction:")[1].splitlines()[1:]) + "\n"
    card.write_text(old)
    assert run(["train", "--card", str(card)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {card}: data: holdout_fraction is now two keys")
    assert "validation_fraction" in err[0]
    assert "test_fraction" in err[0]


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    assert "train" in capsys.readouterr().out


@pytest.mark.parametrize("error", [
    RuntimeError("a bug deep inside"),
    OSError(28, "No space left on device"),
    ConnectionError("the network went away\nwith a second line"),
])
def test_an_unexpected_failure_is_one_line_with_a_reference_and_exit_3(
        error: Exception, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Not a traceback, and not exit 1 (which would read as "the gate said no")."""
    import pipeline.cli.registry as commands

    def explode(*_: object, **__: object) -> None:
        raise error

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(commands, "write_candidate_run_id", explode)
    assert run(["propose", "a" * 32, "--card", str(REPO / "model_card.yaml")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: unexpected {type(error).__name__}: ")
    assert "Traceback" not in err[0]
    reference = err[0].split("(ref ", 1)[1].split(";", 1)[0]
    logged = (tmp_path / "home" / "mlops-errors.log").read_text()
    assert f"ref {reference}" in logged
    assert "Traceback" in logged  # the detail is kept, just not on the terminal


HEAVY = ("sklearn", "skops", "mlflow", "pandas", "numpy", "scipy", "matplotlib", "pyarrow",
         "pandera")
"""Seconds of imports between them: the commands that fit, score, gate or read a table
import them, `--help` and `status` do not (benchmarks/cli/startup.py times both)."""


@pytest.mark.parametrize("argv", [["--help"], ["status", "--help"], ["runs", "--help"]])
def test_the_cli_starts_without_the_heavy_libraries(argv: list[str]) -> None:
    """`mlops --help` imports the whole CLI and renders every command's help, and
    imports none of the libraries that take seconds."""
    code = ("import sys\nfrom pipeline.cli import run\n"
            f"code = run({argv!r})\n"
            f"print(code, sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout[-2000:]
