"""Forgiving CSV handling and the per-feature value rules (no model fitted here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelport.features import FeatureError, fill_value, prepare_frame
from modelport.metadata import FeatureSpec, ModelCard
from training.data import DataError, build_dataset, feature_specs, load_csv

pytestmark = pytest.mark.unit


def _frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "region": rng.choice(["north, east", "south"], n),
            "alcohol": x.round(3),
            "cultivar": np.where(x > 0, "a", "b"),
        }
    )


def _load(path: Path, target: str = "cultivar", **kw):  # type: ignore[no-untyped-def]
    return load_csv(path, target, task=kw.pop("task", None), min_rows=30, max_categories=50, **kw)


def test_semicolon_bom_and_quoted_fields_are_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "wine.csv"
    text = _frame().to_csv(index=False, sep=";", quoting=1)  # every field quoted
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    data = _load(path)
    assert list(data.X.columns) == ["region", "alcohol"]  # no BOM in the first name
    assert data.summary is not None
    assert (data.summary.delimiter, data.summary.encoding) == (";", "utf-8-sig")
    assert set(data.X["region"]) == {"north, east", "south"}
    assert data.X["alcohol"].dtype == float


def test_cp1252_tab_file_and_explicit_overrides(tmp_path: Path) -> None:
    frame = _frame()
    frame["region"] = np.where(frame["alcohol"] > 0, "Rhône", "Côte")
    path = tmp_path / "latin.tsv"
    path.write_bytes(frame.to_csv(index=False, sep="\t").encode("cp1252"))
    data = _load(path)
    assert data.summary is not None and data.summary.encoding == "cp1252"
    assert set(data.X["region"]) == {"Rhône", "Côte"}
    with pytest.raises(DataError, match=r"not utf-8 text .*--encoding"):
        _load(path, encoding="utf-8")
    with pytest.raises(DataError, match=r"target column 'cultivar' not found.*--sep"):
        _load(path, sep=",")


def test_non_number_in_numeric_column_names_column_line_and_value(tmp_path: Path) -> None:
    frame = _frame()
    frame["alcohol"] = frame["alcohol"].astype(object)
    frame.loc[15, "alcohol"] = "abc"
    path = tmp_path / "typo.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(
        DataError, match=r"column 'alcohol' is numeric but line 17 has 'abc' \(1 value"
    ):
        _load(path)


def test_high_cardinality_text_says_what_to_do(tmp_path: Path) -> None:
    frame = _frame()
    frame["note"] = [f"note {i}" for i in range(len(frame))]
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        _load(path)
    msg = str(err.value)
    assert "column 'note' is text with 60 distinct values" in msg
    assert "--drop 'note'" in msg and "hashed" in msg and "MODELPORT_MAX_CATEGORIES" in msg
    assert list(_load(path, drop=("note",)).X.columns) == ["region", "alcohol"]


def test_two_values_are_a_classification_whatever_their_type() -> None:
    frame = _frame()
    frame["cultivar"] = np.where(frame["alcohol"] > 0, 2.0, 1.0)
    data = build_dataset(
        frame, "cultivar", source="f", sha256="", task=None, min_rows=30, max_categories=50
    )
    assert data.task == "classification"
    assert sorted(data.y.unique().tolist()) == [1, 2] and data.y.dtype == "int64"


def test_continuous_target_as_classification_is_one_line() -> None:
    frame = _frame(400)
    frame["cultivar"] = np.linspace(0, 1, 400) ** 2
    with pytest.raises(DataError) as err:
        build_dataset(
            frame,
            "cultivar",
            source="f",
            sha256="",
            task="classification",
            min_rows=30,
            max_categories=50,
        )
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 200
    assert "looks continuous (400 distinct numeric values)" in msg


def test_dates_are_one_raw_feature_expanded_by_the_rules(tmp_path: Path) -> None:
    frame = _frame()
    frame["signup"] = pd.date_range("2023-01-01", periods=60, freq="7D").strftime("%Y-%m-%d")
    frame.loc[3, "signup"] = None
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    data = _load(path)
    spec = {s.name: s for s in feature_specs(data.X)}["signup"]
    assert spec.kind == "datetime" and spec.missing == 1
    assert spec.date_range == ["2023-01-01T00:00:00", "2024-02-18T00:00:00"]
    ruled = spec.model_copy(update={"impute": fill_value(data.X["signup"], "datetime", "median")})
    out = prepare_frame(pd.DataFrame({"signup": ["2024-03-01T12:30:00Z", None]}), [ruled])
    assert out.imputed == {"signup": 1}
    row = out.frame.iloc[0]
    assert (row["signup.year"], row["signup.month"], row["signup.day"]) == (2024, 3, 1)
    assert (row["signup.dayofweek"], row["signup.hour"]) == (4, 12)
    assert row["signup.epoch_days"] == pytest.approx(19783.5208, abs=1e-3)
    with pytest.raises(FeatureError, match=r"instances\[0\]\.signup: expected an ISO 8601 date"):
        prepare_frame(pd.DataFrame({"signup": ["01/03/2024"]}), [ruled])


def test_value_rules_name_the_row_feature_and_value() -> None:
    specs = [
        FeatureSpec(name="x", kind="numeric", dtype="float64", impute=1.5),
        FeatureSpec(name="n", kind="numeric", dtype="float64"),
        FeatureSpec(name="c", kind="categorical", dtype="object", categories=["a", "b"]),
    ]
    frame = pd.DataFrame({"x": [None, 2.0], "n": [1.0, 2.0], "c": ["a", "b"]})
    out = prepare_frame(frame, specs, unknown="error")
    assert out.imputed == {"x": 1} and out.frame["x"].tolist() == [1.5, 2.0]
    with pytest.raises(FeatureError, match=r"instances\[1\]\.n: missing value, and this"):
        prepare_frame(frame.assign(n=[1.0, None]), specs)
    with pytest.raises(FeatureError, match=r"instances\[0\]\.n: expected a number, got 'x1'"):
        prepare_frame(frame.assign(n=["x1", 2]), specs)
    unknown = frame.assign(c=["a", "z"])
    with pytest.raises(
        FeatureError, match=r"instances\[1\]\.c: unknown category 'z'; known categories: 'a', 'b'"
    ) as err:
        prepare_frame(unknown, specs, unknown="error")
    assert (err.value.feature, err.value.row, err.value.value) == ("c", 1, "z")
    assert prepare_frame(unknown, specs, unknown="ignore").frame["c"].tolist() == ["a", "z"]


def test_cards_written_before_the_new_fields_still_load(trained_card_json: dict) -> None:
    card = ModelCard.from_metadata({"modelport": trained_card_json})
    assert card.unknown_categories == "ignore"  # what those models were served with
    assert card.data is None and card.leaderboard is None and card.fingerprint is None
    assert all(f.impute is None and f.missing == 0 for f in card.features)


@pytest.fixture
def trained_card_json() -> dict:
    # A card as the previous schema wrote it (no imputation, data summary, leaderboard).
    feature = {"name": "x", "kind": "numeric", "dtype": "float64", "min": 0.0, "max": 1.0}
    return {
        "schema_version": 1,
        "framework": "sklearn",
        "task": "regression",
        "target": "y",
        "features": [feature],
        "evaluation": {
            "test": {"r2": 0.5},
            "train_score": 0.6,
            "validation_score": 0.5,
            "score_name": "r2",
            "overfit_gap": 0.1,
            "overfit": True,
        },
        "params": {"estimator": "LinearRegression"},
        "drift": {"features": [], "prediction_buckets": [0.0, 1.0]},
        "sample": {"instances": [{"x": 0.5}], "predictions": [0.4]},
        "integrity": {"data_sha256": "0" * 64, "files": {}},
        "data_source": "old.csv",
        "rows": {"train": 1, "validation": 1, "test": 1},
    }
