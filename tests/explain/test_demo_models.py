"""The demo models as trained and served: additivity, global importance in the card and
the report, and ``modelport explain`` on a CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from modelport import store
from modelport.cli import app
from modelport.explain import explainer_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

METHODS = {
    "breast-cancer": "linear-exact",
    "diabetes": "linear-exact",
    "breast-cancer-keras": "permutation",
}


def _rows(name: str, n: int) -> pd.DataFrame:
    from training.recipes import RECIPES

    frame = RECIPES[name].load()
    return frame.drop(columns=[RECIPES[name].target]).sample(n=n, random_state=1)


@pytest.mark.parametrize("name", list(METHODS))
def test_demo_model_attributions_add_up(trained: dict[str, Any], name: str) -> None:
    model = store.resolve(name)
    card = store.card_of(model)
    predictor = store.predictor_of(model, card, "auto")  # as the service loads it
    explainer = explainer_for(predictor, card)
    assert explainer.method == METHODS[name]
    rows = _rows(name, 4 if explainer.sampled else 50)
    X = rows[card.feature_names].to_numpy(dtype=float)  # the service's all-numeric input
    for all_classes in (False, True):
        ex = explainer.explain(X, all_classes=all_classes)
        assert ex.additivity_error() <= ex.tolerance
        assert ex.tolerance <= (1e-5 if explainer.sampled else 1e-6)
        scores = predictor.scores(X).reshape(len(X), -1)
        if card.task == "regression":
            np.testing.assert_allclose(ex.values[:, 0], scores[:, 0], atol=1e-6, rtol=0)
        else:
            picked = scores if all_classes else scores.max(axis=1, keepdims=True)
            np.testing.assert_allclose(ex.values, picked, atol=ex.tolerance, rtol=0)
        assert ex.predictions == predictor.predict(X).predictions


@pytest.mark.parametrize("name", list(METHODS))
def test_card_and_report_carry_global_importance(trained: dict[str, Any], name: str) -> None:
    result = trained[name]
    card = store.card_of(store.resolve(result.tag))  # type: ignore[attr-defined]
    assert card.explain is not None and 0 < len(card.explain.background) <= 50
    imp = card.importance
    assert imp is not None and imp.method == METHODS[name]
    assert list(imp.values) == card.feature_names
    assert imp.rows == card.rows["test"]
    assert all(v >= 0 for v in imp.values.values()) and max(imp.values.values()) > 0
    html = result.report.read_text()  # type: ignore[attr-defined]
    assert 'alt="feature_importance"' in html
    # Recomputed from the stored model on the same split, importance is the same.
    explainer = explainer_for(store.predictor_of(store.resolve(result.tag), card), card)  # type: ignore[attr-defined]
    if not explainer.sampled:
        top = max(imp.values, key=imp.values.__getitem__)
        assert imp.values[top] > 0


def test_cli_explains_a_csv(trained: dict[str, Any], tmp_path: Path) -> None:
    rows = _rows("breast-cancer", 12)
    rows["patient"] = range(12)  # not a feature: ignored, and said so
    src = tmp_path / "in.csv"
    rows.to_csv(src, index=False)
    out = tmp_path / "attr.csv"
    res = CliRunner().invoke(
        app, ["explain", "breast-cancer", "--csv", str(src), "--out", str(out), "--top", "3"]
    )
    assert res.exit_code == 0, res.output
    assert "linear-exact" in res.output and "attributions written to" in res.output
    assert "ignored columns (not model features): patient" in res.output
    table = pd.read_csv(out)
    assert len(table) == 12 and table["line"].tolist() == list(range(2, 14))
    attr = table[[c for c in table.columns if c.startswith("attribution:")]].to_numpy()
    assert attr.shape[1] == 30
    np.testing.assert_allclose(table["base_value"] + attr.sum(axis=1), table["value"], atol=1e-6)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.drop(columns=["mean radius"]), "in.csv: missing column(s) 'mean radius'"),
        (
            lambda f: f.assign(**{"mean area": ["x"] + [1.0] * (len(f) - 1)}),
            "in.csv line 2: column 'mean area': expected a finite number, got 'x'",
        ),
        (
            lambda f: f.assign(**{"mean area": [1.0, None] + [1.0] * (len(f) - 2)}),
            "in.csv line 3: column 'mean area': missing value",
        ),
    ],
)
def test_cli_bad_csv_is_one_line_exit_2(
    trained: dict[str, Any], tmp_path: Path, edit: Any, message: str
) -> None:
    src = tmp_path / "in.csv"
    edit(_rows("breast-cancer", 5)).to_csv(src, index=False)
    res = CliRunner().invoke(app, ["explain", "breast-cancer", "--csv", str(src)])
    assert res.exit_code == 2
    assert message in res.output.replace("\n", "")
    assert "Traceback" not in res.output


def test_cli_unknown_model_and_missing_file(trained: dict[str, Any], tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["explain", "nope", "--csv", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "model 'nope' is not in the model store" in res.output
    res = CliRunner().invoke(app, ["explain", "diabetes", "--csv", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "x.csv: no such file" in res.output.replace("\n", "")
