"""The CLI: bad data exits non-zero with the message and leaves the store unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from modelport.cli import app

pytestmark = pytest.mark.integration


def _tags() -> set[str]:
    import bentoml

    return {str(m.tag) for m in bentoml.models.list()}


def _write(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def _good(n: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x, "z": rng.normal(size=n), "label": (x > 0).astype(int)})


def _bad_cases(tmp: Path) -> list[tuple[list[str], str]]:
    nan = _good()
    nan.loc[[3, 7], "z"] = np.nan
    text = _good()
    text["note"] = [f"n{i}" for i in range(len(text))]
    single = _good()
    single["label"] = 1
    empty = tmp / "empty.csv"
    empty.write_text("")
    return [
        (["--csv", str(tmp / "missing.csv")], "missing.csv: no such file"),
        (["--csv", str(empty)], "empty.csv: file is empty"),
        (
            ["--csv", str(_write(tmp / "g.csv", _good())), "--target", "nope"],
            "target column 'nope' not found",
        ),
        (
            ["--csv", str(_write(tmp / "nan.csv", nan)), "--impute", "mean"],
            "--impute 'mean': choose median, most_frequent or drop",
        ),
        (["--csv", str(_write(tmp / "text.csv", text))], "column 'note' is text"),
        (["--csv", str(_write(tmp / "single.csv", single))], "has a single class"),
        (["--csv", str(_write(tmp / "few.csv", _good(15)))], "15 rows are too few"),
    ]


def test_bad_data_fails_cleanly_and_writes_nothing(tmp_path: Path) -> None:
    runner = CliRunner()
    for args, message in _bad_cases(tmp_path):
        full = ["train", *args]
        if "--target" not in args:
            full += ["--target", "label"]
        full += ["--name", "cli-bad"]
        before = _tags()
        result = runner.invoke(app, full)
        text = " ".join(result.output.split())
        assert result.exit_code == 2, (args, result.output)
        assert message in text, (message, text)
        assert "Traceback" not in result.output
        assert _tags() == before


def test_cli_trains_csv_and_lists_it(tmp_path: Path) -> None:
    runner = CliRunner()
    path = _write(tmp_path / "ok.csv", _good())
    result = runner.invoke(
        app, ["train", "--csv", str(path), "--target", "label", "--name", "cli-ok", "--promote"]
    )
    assert result.exit_code == 0, result.output
    tag = result.output.strip().splitlines()[-1]
    assert tag.startswith("cli-ok:")
    listing = runner.invoke(app, ["models", "cli-ok"])
    assert "production" in listing.output and "accuracy" in listing.output


def test_cli_rejects_unknown_recipe_and_bad_name() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["train", "nope"])
    assert result.exit_code == 2 and "unknown recipe 'nope'" in result.output
    result = runner.invoke(app, ["train", "diabetes", "--name", "Bad Name"])
    assert result.exit_code == 2 and "must be lower-case" in " ".join(result.output.split())


def test_promote_needs_a_version() -> None:
    result = CliRunner().invoke(app, ["promote", "breast-cancer"])
    assert result.exit_code == 2 and "NAME:VERSION" in result.output
