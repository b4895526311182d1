"""Training-data validation: every bad input gets a message naming file, column, line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data import DataError, feature_specs, load_csv, validate_frame

pytestmark = pytest.mark.unit


def _frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "x1": x,
            "x2": rng.normal(size=n),
            "colour": rng.choice(["red", "green", "blue"], size=n),
            "label": np.where(x > 0, "yes", "no"),
        }
    )


def _load(path: Path, target: str = "label", task=None):  # type: ignore[no-untyped-def]
    return load_csv(path, target, task=task, min_rows=30, max_categories=50)


def test_good_csv_infers_classification_and_keeps_categoricals(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    _frame().to_csv(path, index=False)
    data = _load(path)
    assert data.task == "classification"
    specs = {s.name: s for s in feature_specs(data.X)}
    assert specs["colour"].kind == "categorical"
    assert specs["colour"].categories == ["blue", "green", "red"]
    assert specs["x1"].kind == "numeric" and specs["x1"].min < specs["x1"].max
    assert len(data.sha256) == 64


def test_regression_inferred_for_continuous_target(tmp_path: Path) -> None:
    frame = _frame()
    frame["label"] = frame["x1"] * 3.5 + 0.1
    path = tmp_path / "r.csv"
    frame.to_csv(path, index=False)
    assert _load(path).task == "regression"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        _load(tmp_path / "nope.csv")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: file is empty"):
        _load(path)


def test_header_only(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("a,b,label\n")
    with pytest.raises(DataError, match="header but no data rows"):
        _load(path)


def test_malformed_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b,label\n1,2,x\n3,4,y\n5,6,7,8\n")
    with pytest.raises(DataError, match=r"bad\.csv: not a well-formed CSV file.*line 4"):
        _load(path)


def test_missing_target_lists_columns(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    _frame().to_csv(path, index=False)
    with pytest.raises(DataError, match=r"target column 'y' not found; columns are: 'x1'"):
        _load(path, target="y")


def test_missing_values_are_counted_and_kept_for_imputation(tmp_path: Path) -> None:
    frame = _frame()
    frame.loc[[4, 9, 10], "x2"] = np.nan
    frame.loc[[2], "colour"] = np.nan
    path = tmp_path / "nan.csv"
    frame.to_csv(path, index=False)
    data = _load(path)
    assert data.summary is not None and data.summary.missing == {"x2": 3, "colour": 1}
    assert data.summary.impute == "median" and data.summary.rows_used == 60
    specs = {s.name: s for s in feature_specs(data.X)}
    assert specs["x2"].missing == 3 and specs["colour"].categories == ["blue", "green", "red"]
    dropped = load_csv(path, "label", task=None, min_rows=30, max_categories=50, impute="drop")
    assert len(dropped.X) == 56 and not dropped.X.isna().any().any()
    assert dropped.summary is not None
    assert dropped.summary.dropped_rows == {"missing feature values (--impute drop)": 4}


def test_unencodable_text_column(tmp_path: Path) -> None:
    frame = _frame()
    frame["comment"] = [f"free text {i}" for i in range(len(frame))]
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'comment' is text with 60 distinct values"):
        _load(path)


def test_single_class(tmp_path: Path) -> None:
    frame = _frame()
    frame["label"] = "yes"
    path = tmp_path / "one.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"has a single class \('yes'\)"):
        _load(path)


def test_too_few_rows(tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    _frame(n=12).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"12 rows are too few .* \(need at least 30\)"):
        _load(path)


def test_rare_class(tmp_path: Path) -> None:
    frame = _frame()
    frame.loc[0, "label"] = "maybe"
    path = tmp_path / "rare.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"1 class\(es\) .* fewer than 3 rows \('maybe'\)"):
        _load(path)


def test_regression_target_must_be_numeric(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    _frame().to_csv(path, index=False)
    with pytest.raises(
        DataError,
        match=r"regression target 'label' is not numeric "
        r"\(e.g. '.*' at line 2\)",
    ):
        _load(path, task="regression")


def test_no_feature_columns() -> None:
    frame = pd.DataFrame({"label": ["a", "b"] * 20})
    with pytest.raises(DataError, match="no feature columns"):
        validate_frame(frame, "label", source="f", task=None, min_rows=10, max_categories=5)


def test_booleans_become_integers() -> None:
    frame = _frame()
    frame["flag"] = frame["x1"] > 0.5
    X, _, _ = validate_frame(frame, "label", source="f", task=None, min_rows=10, max_categories=5)
    assert X["flag"].dtype == "int64"
