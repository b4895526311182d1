"""Model choice, search, versions, the gate across feature sets, and batch scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from modelport import store
from modelport.cli import app
from modelport.predictors import SklearnPredictor
from training import estimators
from training.data import load_csv
from training.recipes import RECIPES
from training.run import Choice, overfit_check, train

pytestmark = pytest.mark.integration
QUIET = Console(quiet=True)


def _tags(name: str) -> set[str]:
    import bentoml

    return {str(m.tag) for m in bentoml.models.list() if m.tag.name == name}


@pytest.fixture(scope="module")
def cancer_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("csv") / "cancer.csv"
    frame = RECIPES["breast-cancer"].load()
    frame[["mean radius", "mean texture", "worst area", "mean smoothness", "target"]].to_csv(
        path, index=False
    )
    return path


@pytest.mark.parametrize("family", list(estimators.FAMILIES))
def test_every_family_fits_both_tasks_and_keeps_the_fast_path(family: str) -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "c"])
    from training.data import feature_specs

    specs = feature_specs(X)
    for task, y in (("classification", (X["a"] > 0).astype(int)), ("regression", X["a"] * 2)):
        pipe, params = estimators.build_sklearn(task, specs, 0, family)  # type: ignore[arg-type]
        pipe.fit(X, y)
        assert params["family"] == family and params["model_params"]
        predictor = SklearnPredictor(pipe, task, [0, 1] if task == "classification" else None)
        # The served fast path covers the family and reproduces the pipeline exactly.
        assert predictor.enable_fast_path(["a", "b", "c"], X.head(20)) is None
        reference = predictor._reference(X.head(20))
        assert np.allclose(predictor.scores(X.head(20).to_numpy()), reference, rtol=1e-9)


def test_param_overrides_are_checked_and_recorded(cancer_csv: Path, settings) -> None:
    with pytest.raises(estimators.ParamError, match=r"--param 'depth': not a parameter of"):
        estimators.make_estimator("decision-tree", "classification", 0, {"depth": 3})
    with pytest.raises(estimators.ParamError, match=r"--param for decision-tree: .*max_depth"):
        estimators.make_estimator("decision-tree", "classification", 0, {"max_depth": -1})
    data = load_csv(cancer_csv, "target", task=None, min_rows=30, max_categories=50)
    choice = Choice(estimator="decision-tree", params=estimators.parse_params(["max_depth=3"]))
    result = train(
        data, name="tree", framework="sklearn", settings=settings, console=QUIET, choice=choice
    )
    assert result.registered
    params = result.card.params
    assert params["family"] == "decision-tree" and params["estimator"] == "DecisionTreeClassifier"
    assert params["overrides"] == {"max_depth": 3} and params["model_params"]["max_depth"] == 3
    assert "<h2>Model</h2>" in result.report.read_text()


def test_search_ranks_candidates_within_the_budget(cancer_csv: Path, settings) -> None:
    data = load_csv(cancer_csv, "target", task=None, min_rows=30, max_categories=50)
    choice = Choice(estimator="knn", search=True, budget_s=60)
    result = train(
        data, name="searched", framework="sklearn", settings=settings, console=QUIET, choice=choice
    )
    board = result.card.leaderboard
    assert board is not None and len(board) == 3  # knn's grid: n_neighbors 5, 10, 20
    assert [c.chosen for c in board] == [True, False, False]
    assert board[0].cv_mean >= board[1].cv_mean >= board[2].cv_mean
    assert all(0 < c.predict_us_per_row < 1e5 and c.fit_seconds > 0 for c in board)
    assert result.card.params["model_params"]["n_neighbors"] == board[0].params["n_neighbors"]
    page = result.report.read_text()
    assert "Search leaderboard" in page and "chosen: knn" in page
    # An exhausted budget still ranks the candidate that finished.
    tiny = Choice(estimator="decision-tree", search=True, budget_s=1e-9)
    result = train(
        data, name="searched2", framework="sklearn", settings=settings, console=QUIET, choice=tiny
    )
    assert result.card.leaderboard is not None and len(result.card.leaderboard) == 1


def test_gate_compares_a_different_feature_set_or_says_why_not(
    cancer_csv: Path, tmp_path: Path, settings
) -> None:
    loose = settings.model_copy(update={"gate_min_metrics": {}})
    full = load_csv(cancer_csv, "target", task=None, min_rows=30, max_categories=50)
    first = train(full, name="fs", framework="sklearn", settings=loose, console=QUIET)
    store.promote(first.tag)
    # --drop keeps the column for the gate: production is scored on our test split.
    fewer = load_csv(
        cancer_csv, "target", task=None, min_rows=30, max_categories=50, drop=("worst area",)
    )
    second = train(fewer, name="fs", framework="sklearn", settings=loose, console=QUIET)
    assert second.card.feature_names == ["mean radius", "mean texture", "mean smoothness"]
    assert any("this model's test split, its own features" in n for n in second.gate.notes) or any(
        "worse than production" in f for f in second.gate.failures
    )
    # Without the column in the data, the gate says why and what to do.
    path = tmp_path / "lacking.csv"
    pd.read_csv(cancer_csv).drop(columns=["worst area"]).to_csv(path, index=False)
    lacking = load_csv(path, "target", task=None, min_rows=30, max_categories=50)
    before = _tags("fs")
    third = train(lacking, name="fs", framework="sklearn", settings=loose, console=QUIET)
    assert not third.registered and _tags("fs") == before
    (failure,) = third.gate.failures
    assert "uses feature(s) 'worst area' that this data does not have" in failure
    assert "--drop 'worst area'" in failure and "--force" in failure


def test_overfitting_rule_spares_a_healthy_linear_model(settings) -> None:
    # The case: a plain linear regression, R² train 0.52 vs validation 0.46.
    assert overfit_check("r2", 0.52, 0.46, settings)[0] is False
    assert overfit_check("r2", 0.98, 0.55, settings)[0] is True
    assert overfit_check("accuracy", 0.99, 0.98, settings)[0] is False
    flagged, rule = overfit_check("accuracy", 1.0, 0.85, settings)
    assert flagged and rule == (
        "over-fitted when train accuracy - validation accuracy > 0.05 "
        "and > 10% of the train accuracy"
    )


def test_diabetes_linear_regression_is_not_flagged(trained) -> None:
    ev = trained["diabetes"].card.evaluation
    assert ev.overfit is False and ev.overfit_rule and ev.overfit_gap > 0


def test_missing_values_dates_and_categories_survive_training_serving_and_scoring(
    tmp_path: Path, settings
) -> None:
    rng = np.random.default_rng(7)
    n = 240
    x = rng.normal(size=n)
    day = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    colour = rng.choice(["red", "green", "blue"], n)
    frame = pd.DataFrame(
        {
            "x": x,
            "signup": day.strftime("%Y-%m-%d"),
            "colour": colour,
            "churned": np.where((x > 0) | (colour == "red"), "yes", "no"),
        }
    )
    frame.loc[[5, 17, 40], "x"] = np.nan
    frame.loc[[8], "colour"] = np.nan
    path = tmp_path / "churn.csv"
    frame.to_csv(path, index=False, sep=";")
    runner = CliRunner()
    result = runner.invoke(
        app, ["train", "--csv", str(path), "--target", "churned", "--name", "churn"]
    )
    assert result.exit_code == 0, result.output
    tag = result.output.strip().splitlines()[-1]
    card = store.card_of(store.resolve(tag))
    specs = {f.name: f for f in card.features}
    assert card.feature_names == ["x", "signup", "colour"]  # a date stays one raw input
    assert specs["signup"].kind == "datetime"
    assert specs["x"].missing == 3 and isinstance(specs["x"].impute, float)
    assert specs["colour"].impute in ("blue", "green", "red")
    assert card.unknown_categories == "error" and card.data is not None
    assert card.data.delimiter == ";" and card.data.missing == {"x": 3, "colour": 1}
    assert card.params["impute"] == "median"
    # The stored model applies the same rules by itself: a null and an ISO date.
    predictor = store.predictor_of(store.resolve(tag), card)
    raw = pd.DataFrame({"x": [np.nan, 1.0], "signup": ["2024-05-01", "2024-06-01T10:00:00Z"]})
    out = predictor.predict(raw.assign(colour=["red", "blue"]))
    assert out.predictions[0] == "yes" and out.probabilities is not None
    # Training again on the same file and options makes no new version.
    again = runner.invoke(
        app, ["train", "--csv", str(path), "--target", "churned", "--name", "churn"]
    )
    assert again.exit_code == 0 and f"parameters as {tag}: no new version" in again.output
    assert again.output.strip().splitlines()[-1] == tag and _tags("churn") == {tag}

    # Batch scoring: same rules, one line per bad value, predictions beside the rows.
    todo = frame.drop(columns=["churned"]).head(30)
    src = tmp_path / "todo.csv"
    todo.to_csv(src, index=False)
    dest = tmp_path / "scored.csv"
    scored = runner.invoke(app, ["score", tag, "--csv", str(src), "--out", str(dest)])
    assert scored.exit_code == 0, scored.output
    table = pd.read_csv(dest)
    assert len(table) == 30 and list(table.columns[:3]) == ["x", "signup", "colour"]
    assert set(table["prediction"]) <= {"yes", "no"}
    assert np.allclose(table["probability_no"] + table["probability_yes"], 1.0)
    assert "imputed 2 missing value(s) of 'x'" in " ".join(scored.output.split())
    bad = todo.assign(colour=["purple", *todo["colour"][1:]])
    bad.to_csv(src, index=False)
    dest.unlink()
    refused = runner.invoke(app, ["score", tag, "--csv", str(src), "--out", str(dest)])
    text = " ".join(refused.output.split())
    assert refused.exit_code == 2 and not dest.exists() and "Traceback" not in refused.output
    assert "line 2, column 'colour': unknown category 'purple'; known categories:" in text


def test_cli_refuses_bad_choices_before_training(cancer_csv: Path) -> None:
    runner = CliRunner()
    base = ["train", "--csv", str(cancer_csv), "--target", "target", "--name", "bad-choice"]
    cases = [
        (["--estimator", "xgboost"], "--estimator 'xgboost': unknown; choose one of: linear"),
        (["--param", "max_depth"], "--param 'max_depth': expected key=value"),
        (["--estimator", "tree", "--param", "depth=2"], "--param 'depth': not a parameter"),
        (["--search", "--budget", "soon"], "--budget 'soon': expected seconds"),
        (["--impute", "zero"], "--impute 'zero': choose median, most_frequent or drop"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert message in " ".join(result.output.split()), result.output
        assert _tags("bad-choice") == set()
