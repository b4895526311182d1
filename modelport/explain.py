"""Per-row explanations: one attribution per original input feature, adding up to the
model's output.

The method is chosen once per model, at load (:func:`explainer_for`):

* ``linear-exact``: scaled/one-hot linear and logistic pipelines, in closed form from
  the coefficients and the training means (written here: a few array operations, so
  it costs about one prediction). Exact on the linear score. Logistic models report
  the class probability: the exact log-odds attributions are rescaled by
  ``(p - p_base) / (score - score_base)`` so they add up to the probability exactly
  (``space="margin"`` reports the exact log-odds attributions instead).
* ``tree-shap``: shap's TreeSHAP (path-dependent, needs no background) on decision
  trees, random forests and gradient boosting. Forests explain the probability
  directly; boosting explains its log-odds, rescaled to the probability as above.
* ``permutation``: shap's permutation explainer for anything else (the Keras MLP),
  against a small background of training rows stored in the model card, with a cap on
  model evaluations per row and a time budget (:class:`BudgetExceededError`).

Attributions of one-hot columns are summed back to their feature, in
``card.feature_names`` order. ``shap`` is imported only when a tree or sampled
explainer is built.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from modelport.metadata import ExplainReference, Importance, ModelCard
from modelport.predictors import Predictor, SklearnPredictor, Transform, compile_columns

if TYPE_CHECKING:
    import pandas as pd

METHOD_LINEAR = "linear-exact"
METHOD_TREE = "tree-shap"
METHOD_PERMUTATION = "permutation"

# |base + sum(attributions) - output| each method guarantees.
EXACT_TOLERANCE = 1e-6
# Sampled: additivity holds by construction (each permutation telescopes); what is
# left is float32 arithmetic in the network and its batch-size dependence.
SAMPLED_TOLERANCE = 1e-5

BACKGROUND_ROWS = 50  # training rows stored in the card for sampled explainers
DEFAULT_BUDGET_SECONDS = 5.0
DEFAULT_PERMUTATIONS = 2  # antithetic permutation pairs per row: 2 * (2F + 1) evaluations
DEFAULT_SAMPLED_MAX_ROWS = 16  # rows per request the service should allow a sampled method

Space = Literal["probability", "margin"]

_LINEAR_REGRESSORS = {
    "LinearRegression",
    "Ridge",
    "RidgeCV",
    "Lasso",
    "LassoCV",
    "ElasticNet",
    "ElasticNetCV",
    "Lars",
    "LassoLars",
    "BayesianRidge",
    "ARDRegression",
    "HuberRegressor",
    "SGDRegressor",
}
_LINEAR_CLASSIFIERS = {"LogisticRegression", "LogisticRegressionCV"}
_TREES = {
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
}


class ExplainError(Exception):
    """An explanation that cannot be given; the message says why."""


class ExplainUnavailableError(ExplainError):
    """No explainer for this model (raised at load): the service answers 501/503."""


class BudgetExceededError(ExplainError):
    """A sampled explanation ran past its time budget: the service answers 503."""

    def __init__(self, message: str, budget_seconds: float, rows_done: int) -> None:
        super().__init__(message)
        self.budget_seconds = budget_seconds
        self.rows_done = rows_done


@dataclass(frozen=True)
class Explanation:
    """Attributions for a batch. ``k`` outputs per row: the predicted class (or every
    class with ``all_classes``), or the regression value.

    ``values[i, j] == base_values[i, j] + attributions[i, j].sum()`` within ``tolerance``.
    """

    method: str
    output: str  # "probability", "log-odds" or "value"
    feature_names: list[str]
    predictions: list[Any]  # the predicted label (or value) per row
    classes: list[list[Any]] | None  # per row, the class of each explained output
    values: np.ndarray  # (n, k) the output explained
    base_values: np.ndarray  # (n, k)
    attributions: np.ndarray  # (n, k, features)
    tolerance: float

    def additivity_error(self) -> float:
        total = self.base_values + self.attributions.sum(axis=2)
        return float(np.abs(total - self.values).max()) if self.values.size else 0.0

    def rows(self) -> list[dict[str, Any]]:
        """JSON-ready, one object per row."""
        out = []
        for i, pred in enumerate(self.predictions):
            outputs = []
            for j in range(self.values.shape[1]):
                item: dict[str, Any] = {}
                if self.classes is not None:
                    item["class"] = self.classes[i][j]
                item["value"] = float(self.values[i, j])
                item["base_value"] = float(self.base_values[i, j])
                item["attributions"] = dict(
                    zip(self.feature_names, self.attributions[i, j].tolist(), strict=True)
                )
                outputs.append(item)
            out.append({"prediction": pred, "explanations": outputs})
        return out


def _shap() -> Any:
    """shap, imported on first use only: with numba it takes seconds and ~150 MB."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # matplotlib colormap deprecations at import
            import shap
    except ImportError:
        raise ExplainUnavailableError(
            "explanations of this model need the shap library: pip install 'modelport[explain]'"
        ) from None
    return shap


# -- column layout ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """How a fitted ColumnTransformer maps original features to model columns."""

    groups: np.ndarray  # (columns, features): 1 where a column comes from a feature
    mean: np.ndarray | None  # (columns,) the training mean of each column, when known


def _feature_of(column: str, card: ModelCard) -> int | None:
    """The card feature a column entering the ColumnTransformer comes from: itself, or
    for derived columns (a datetime's ``<name>.<part>``) the feature it was made of."""
    names = card.feature_names
    if column in names:
        return names.index(column)
    base = column.rsplit(".", 1)[0]
    return names.index(base) if base in names else None


def _layout(ct: Any, card: ModelCard) -> _Layout | None:
    """``None`` for layouts this does not understand (then no exact/tree method)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if not isinstance(ct, ColumnTransformer) or getattr(ct, "sparse_output_", False):
        return None
    F = len(card.feature_names)
    inputs = [str(c) for c in getattr(ct, "feature_names_in_", card.feature_names)]
    ref = card.explain
    blocks: list[np.ndarray] = []
    means: list[np.ndarray] | None = []
    for _, trans, cols in ct.transformers_:
        if isinstance(trans, str) and trans == "drop":
            continue
        cols = [cols] if isinstance(cols, str | int) else list(cols)
        cols = [inputs[c] if isinstance(c, int | np.integer) else str(c) for c in cols]
        if not cols:
            continue
        found = [_feature_of(c, card) for c in cols]
        idx = [j for j in found if j is not None]
        if len(idx) != len(found):
            return None
        if isinstance(trans, OneHotEncoder):
            if trans.drop_idx_ is not None:
                return None
            for j, c, cats in zip(idx, cols, trans.categories_, strict=True):
                block = np.zeros((len(cats), F))
                block[:, j] = 1.0
                blocks.append(block)
                shares = None if ref is None else ref.category_shares.get(c)
                if means is not None and shares is not None:
                    means.append(np.array([shares.get(str(v), 0.0) for v in cats]))
                else:
                    means = None
            continue
        if not (type(trans) is StandardScaler or trans == "passthrough"):
            return None
        block = np.zeros((len(idx), F))
        block[np.arange(len(idx)), idx] = 1.0
        blocks.append(block)
        if type(trans) is StandardScaler and trans.with_mean:
            # Fitted on the training split: its mean is the training mean, scaled to 0.
            if means is not None:
                means.append(np.zeros(len(cols)))
        elif means is not None and ref is not None and all(c in ref.means for c in cols):
            raw = np.array([[ref.means[c] for c in cols]], dtype=float)
            means.append(np.asarray(raw if trans == "passthrough" else trans.transform(raw))[0])
        else:
            means = None
    if not blocks:
        return None
    groups = np.vstack(blocks)
    return _Layout(groups, None if means is None else np.concatenate(means))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def _to_probability(
    margin_attr: np.ndarray, margins: np.ndarray, base_margin: np.ndarray, link: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rescale exact margin attributions (n, K, F) onto the probability: each feature
    keeps its share of the margin's change, and the shares add up to p - p_base."""
    inv = _sigmoid if link == "sigmoid" else _softmax
    p = inv(margins)
    p_base = np.broadcast_to(inv(base_margin), p.shape)
    dm = margins - base_margin
    flat = np.abs(dm) < 1e-12
    # Where the margin did not move, the limit of the ratio is the link's slope.
    ratio = np.where(flat, p * (1 - p), (p - p_base) / np.where(flat, 1.0, dm))
    return margin_attr * ratio[..., None], p, np.array(p_base)


# -- explainers ------------------------------------------------------------------------


class Explainer(ABC):
    """Chosen at load; ``explain`` is called per request with the predictor's input."""

    method: str
    sampled = False
    tolerance = EXACT_TOLERANCE
    max_rows: int | None = None  # suggested row cap per request (sampled methods)

    def __init__(self, predictor: Predictor, card: ModelCard) -> None:
        self.predictor = predictor
        self.card = card
        self.names = card.feature_names
        self.classes = card.classes
        if not predictor.feature_names:
            predictor.feature_names = list(self.names)

    @property
    def output(self) -> str:
        return "value" if self.card.task == "regression" else "probability"

    def _frame(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        if isinstance(X, np.ndarray):
            import pandas as pd

            return pd.DataFrame(X, columns=self.names)
        return X[self.names]

    @abstractmethod
    def _outputs(
        self, X: pd.DataFrame | np.ndarray, budget: float | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All outputs: values (n, K), base values (n, K), attributions (n, K, F);
        K = number of classes, or 1 for regression."""

    def explain(
        self,
        model_input: pd.DataFrame | np.ndarray,
        *,
        all_classes: bool = False,
        budget_seconds: float | None = None,
    ) -> Explanation:
        values, base, attr = self._outputs(model_input, budget_seconds)
        n = values.shape[0]
        if self.classes is None:
            predictions: list[Any] = [float(v) for v in values[:, 0]]
            classes = None
        else:
            top = values.argmax(axis=1)
            predictions = [self.classes[i] for i in top]
            if all_classes:
                classes = [list(self.classes) for _ in range(n)]
            else:
                rows = np.arange(n)
                values, base = values[rows, top][:, None], base[rows, top][:, None]
                attr = attr[rows, top][:, None, :]
                classes = [[c] for c in predictions]
        return Explanation(
            method=self.method,
            output=self.output,
            feature_names=list(self.names),
            predictions=predictions,
            classes=classes,
            values=values,
            base_values=base,
            attributions=attr,
            tolerance=self.tolerance,
        )


class _PipelineExplainer(Explainer):
    """Shared by the linear and tree explainers: the pipeline's column transform, on
    arrays without pandas where :func:`compile_columns` allows."""

    def __init__(self, predictor: SklearnPredictor, card: ModelCard, layout: _Layout) -> None:
        super().__init__(predictor, card)
        pipeline = predictor.estimator
        # Every step before the model (e.g. raw-value rules, then the column transform).
        self.pre = pipeline[:-1]
        self.head = pipeline.steps[-1][1]
        self.layout = layout
        self._fast: Transform | None = None
        if len(pipeline.steps) == 2 and all(f.kind == "numeric" for f in card.features):
            self._fast = compile_columns(pipeline.steps[0][1], self.names)

    def _columns(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if self._fast is not None and isinstance(X, np.ndarray):
            return np.asarray(self._fast(X), dtype=float)
        return np.asarray(self.pre.transform(self._frame(X)), dtype=float)


class LinearExplainer(_PipelineExplainer):
    """Closed form: attribution of column j = w_j (z_j - mean_j), summed per feature."""

    method = METHOD_LINEAR

    def __init__(
        self, predictor: SklearnPredictor, card: ModelCard, layout: _Layout, space: Space
    ) -> None:
        super().__init__(predictor, card, layout)
        assert layout.mean is not None
        self.space = space
        W = np.atleast_2d(np.asarray(self.head.coef_, dtype=float))  # (outputs, columns)
        b = np.atleast_1d(np.asarray(self.head.intercept_, dtype=float))
        if card.task == "classification" and W.shape[0] == 1:
            # Binary: one log-odds for the second class; the first class's is its negative.
            W, b, self.link = np.vstack([-W, W]), np.concatenate([-b, b]), "sigmoid"
        else:
            self.link = "softmax"
        self.W, self.b = W, b
        self.base_margin = W @ layout.mean + b  # (K,)
        # Per-feature weights of each column's deviation, folded once: (K, columns, F).
        self._WG = W[:, :, None] * layout.groups[None, :, :]

    @property
    def output(self) -> str:
        if self.card.task == "regression":
            return "value"
        return "probability" if self.space == "probability" else "log-odds"

    def _outputs(
        self, X: pd.DataFrame | np.ndarray, budget: float | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        Z = self._columns(X)
        D = Z - self.layout.mean
        attr = np.einsum("nc,kcf->nkf", D, self._WG)
        margins = Z @ self.W.T + self.b
        n = Z.shape[0]
        base = np.broadcast_to(self.base_margin, margins.shape)
        if self.card.task == "regression" or self.space == "margin":
            return margins, np.array(base), attr
        attr, p, p_base = _to_probability(attr, margins, self.base_margin, self.link)
        return p, p_base.reshape(n, -1), attr


class TreeExplainer(_PipelineExplainer):
    """shap's TreeSHAP on the model columns, summed back to features."""

    method = METHOD_TREE

    def __init__(self, predictor: SklearnPredictor, card: ModelCard, layout: _Layout) -> None:
        super().__init__(predictor, card, layout)
        try:
            self._shap = _shap().TreeExplainer(self.head)
        except Exception as exc:  # shap's InvalidModelError: e.g. multiclass boosting
            raise ExplainUnavailableError(f"TreeSHAP: {exc}") from None
        # Forests average leaf probabilities (explained as they are); boosting sums
        # log-odds (explained as margins, rescaled to the probability). Told apart on
        # the card's sample rows, and refused if neither reproduces the model.
        self.link: str | None = None
        sample = self._frame_of_sample()
        raw, _, _ = self._raw(self._columns(sample))
        if card.task == "classification":
            proba = np.asarray(self.head.predict_proba(self._columns(sample)), dtype=float)
            if raw.shape == proba.shape and np.allclose(raw, proba, atol=1e-6):
                self.link = None
            elif self._link(raw, proba.shape[1]).shape == proba.shape and np.allclose(
                self._link(raw, proba.shape[1]), proba, atol=1e-6
            ):
                self.link = "sigmoid" if proba.shape[1] == 2 and raw.shape[1] == 1 else "softmax"
            else:
                raise ExplainUnavailableError(
                    f"TreeSHAP output of {type(self.head).__name__} matches neither its "
                    "probabilities nor their log-odds"
                )

    def _frame_of_sample(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.card.sample.instances)[self.names]

    @staticmethod
    def _link(raw: np.ndarray, k: int) -> np.ndarray:
        if raw.shape[1] == 1 and k == 2:
            return _sigmoid(np.hstack([-raw, raw]))
        return _softmax(raw)

    def _raw(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """TreeSHAP in the model's raw output: (n, K) output, (K,) base, (n, K, F)."""
        sv = np.asarray(self._shap.shap_values(Z, check_additivity=False), dtype=float)
        if sv.ndim == 2:
            sv = sv[:, :, None]  # one output: (n, columns, 1)
        attr = np.einsum("nco,cf->nof", sv, self.layout.groups)
        base = np.atleast_1d(np.asarray(self._shap.expected_value, dtype=float)).reshape(-1)
        return base + sv.sum(axis=1), base, attr

    def _outputs(
        self, X: pd.DataFrame | np.ndarray, budget: float | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        Z = self._columns(X)
        raw, base, attr = self._raw(Z)
        n = raw.shape[0]
        # The values reported are the model's own output (what /predict answers).
        if self.card.task == "regression":
            out = np.asarray(self.head.predict(Z), dtype=float).reshape(n, 1)
            return out, np.broadcast_to(base, out.shape).copy(), attr
        proba = np.asarray(self.head.predict_proba(Z), dtype=float)
        if self.link is None:
            return proba, np.broadcast_to(base, raw.shape).copy(), attr
        if raw.shape[1] == 1:  # binary boosting: class 0's log-odds is the negative
            raw, base = np.hstack([-raw, raw]), np.concatenate([-base, base])
            attr = np.concatenate([-attr, attr], axis=1)
        attr, _, p_base = _to_probability(attr, raw, base, self.link)
        return proba, p_base.reshape(n, -1), attr


class SampledExplainer(Explainer):
    """shap's permutation explainer on the original features (categories as codes),
    against background training rows. Each permutation's contributions telescope, so
    base + sum = output holds however few permutations are run."""

    method = METHOD_PERMUTATION
    sampled = True
    tolerance = SAMPLED_TOLERANCE

    def __init__(
        self,
        predictor: Predictor,
        card: ModelCard,
        background: pd.DataFrame,
        *,
        permutations: int = DEFAULT_PERMUTATIONS,
        budget_seconds: float = DEFAULT_BUDGET_SECONDS,
        max_rows: int = DEFAULT_SAMPLED_MAX_ROWS,
        seed: int = 0,
    ) -> None:
        super().__init__(predictor, card)
        self._shap = _shap()
        self.budget_seconds = budget_seconds
        self.max_rows = max_rows
        self.seed = seed
        # Non-numeric features (categories, dates as text) go through shap as codes.
        self.categorical = [i for i, f in enumerate(card.features) if f.kind != "numeric"]
        self._categories = {
            i: [str(c) for c in (card.features[i].categories or [])] for i in self.categorical
        }
        self.background = self._encode(background[self.names], self._categories)
        F = len(self.names)
        self.evals_per_row = permutations * (2 * F + 1)  # masked inputs per explained row
        self.rows_per_call = (2 * F + 1) * len(self.background)  # one permutation per call
        # shap's masking code is numba-compiled on first use (seconds, in every process):
        # pay it here, at load, not in the first request's budget.
        t0 = time.perf_counter()
        cats = {j: list(v) for j, v in self._categories.items()}
        self._outputs(self._decode(self.background[:1], cats), float("inf"))
        self.warm_up_seconds = time.perf_counter() - t0

    def _encode(self, frame: pd.DataFrame, cats: dict[int, list[str]]) -> np.ndarray:
        """Categories as indexes into ``cats`` (extended with unseen values)."""
        if not self.categorical:
            return frame.to_numpy(dtype=float)
        X = np.empty(frame.shape, dtype=float)
        for j, name in enumerate(self.names):
            col = frame[name]
            if j in cats:
                known = cats[j]
                for v in map(str, col.unique()):
                    if v not in known:
                        known.append(v)
                X[:, j] = [known.index(str(v)) for v in col]
            else:
                X[:, j] = col.to_numpy(dtype=float)
        return X

    def _decode(self, X: np.ndarray, cats: dict[int, list[str]]) -> pd.DataFrame | np.ndarray:
        if not self.categorical:
            return X
        import pandas as pd

        cols: dict[str, Any] = {}
        for j, name in enumerate(self.names):
            if j in cats:
                table = np.array(cats[j], dtype=object)
                cols[name] = table[X[:, j].astype(int)]
            else:
                cols[name] = X[:, j]
        return pd.DataFrame(cols)

    def _outputs(
        self, X: pd.DataFrame | np.ndarray, budget: float | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        budget = self.budget_seconds if budget is None else budget
        start = time.perf_counter()
        cats = {j: list(v) for j, v in self._categories.items()}
        rows = X if isinstance(X, np.ndarray) else self._encode(X[self.names], cats)
        if isinstance(X, np.ndarray) and self.categorical:
            raise ExplainError("a model with categorical features needs a DataFrame input")
        n = len(rows)
        done = [0]

        def model(Z: np.ndarray) -> np.ndarray:
            # Checked before every model call, so a slow explanation stops within one
            # call of its budget instead of running on.
            if budget is not None and time.perf_counter() - start > budget:
                raise BudgetExceededError(
                    f"explanation stopped after {time.perf_counter() - start:.2f} s, over its "
                    f"budget of {budget:g} s ({self.method}, {done[0]} of {n} rows done, "
                    f"{self.evals_per_row} evaluations x {len(self.background)} background "
                    "rows per row): send fewer rows or raise the budget",
                    budget,
                    done[0],
                )
            out = self.predictor.scores(self._decode(Z, cats))
            return out.reshape(-1, 1) if out.ndim == 1 else out

        shap = self._shap
        masker = shap.maskers.Independent(self.background, max_samples=len(self.background))
        explainer = shap.PermutationExplainer(model, masker, seed=self.seed)
        values = []
        bases = []
        for i in range(n):
            result = explainer(
                rows[i : i + 1],
                max_evals=self.evals_per_row,
                batch_size=2 * len(self.names) + 1,
                silent=True,
            )
            F = len(self.names)
            values.append(np.asarray(result.values, dtype=float).reshape(F, -1))  # (F, K)
            bases.append(np.asarray(result.base_values, dtype=float).reshape(-1))
            done[0] = i + 1
        attr = np.transpose(np.stack(values), (0, 2, 1))  # (n, K, F)
        base = np.stack(bases)
        out = model(rows)
        return out, base, attr


# -- choosing one ----------------------------------------------------------------------


def _background(card: ModelCard, given: pd.DataFrame | None) -> pd.DataFrame:
    if given is not None:
        return given
    if card.explain is None or not card.explain.background:
        raise ExplainUnavailableError(
            "the model card has no background rows for a sampled explainer "
            "(trained before explanations existed): retrain the model"
        )
    import pandas as pd

    return pd.DataFrame(card.explain.background)


def explainer_for(
    predictor: Predictor,
    card: ModelCard,
    *,
    background: pd.DataFrame | None = None,
    space: Space = "probability",
    permutations: int = DEFAULT_PERMUTATIONS,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    max_rows: int = DEFAULT_SAMPLED_MAX_ROWS,
) -> Explainer:
    """The fastest exact method the model allows, else the sampled one.

    ``background``: training rows for the sampled method (default: the card's).
    ``space``: for logistic models, "probability" (rescaled, additive exactly) or
    "margin" (the exact log-odds attributions). Raises :class:`ExplainUnavailableError`.
    """
    from sklearn.pipeline import Pipeline

    if isinstance(predictor, SklearnPredictor):
        est = predictor.estimator
        if isinstance(est, Pipeline) and len(est.steps) >= 2:
            layout = _layout(est.steps[-2][1], card)
            head = type(est.steps[-1][1]).__name__
            linear = _LINEAR_CLASSIFIERS if card.task == "classification" else _LINEAR_REGRESSORS
            if layout is not None and head in linear and layout.mean is not None:
                linear_explainer = LinearExplainer(predictor, card, layout, space)
                if _reproduces(linear_explainer, predictor, card):
                    return linear_explainer
            if layout is not None and head in _TREES:
                with contextlib.suppress(ExplainUnavailableError):  # then sampled
                    return TreeExplainer(predictor, card, layout)
    return SampledExplainer(
        predictor,
        card,
        _background(card, background),
        permutations=permutations,
        budget_seconds=budget_seconds,
        max_rows=max_rows,
    )


def _reproduces(explainer: LinearExplainer, predictor: Predictor, card: ModelCard) -> bool:
    """The closed form gives the model's own output on the card's sample rows."""
    import pandas as pd

    sample = pd.DataFrame(card.sample.instances)[card.feature_names]
    reference = np.asarray(predictor.scores(sample), dtype=float)
    margins = explainer._columns(sample) @ explainer.W.T + explainer.b
    if card.task == "classification":
        margins = _sigmoid(margins) if explainer.link == "sigmoid" else _softmax(margins)
    ours = margins.reshape(reference.shape)
    return bool(np.allclose(ours, reference, rtol=1e-9, atol=1e-9))


# -- training: the card's reference and the global importance --------------------------


def reference_of(X_train: pd.DataFrame, card: ModelCard, seed: int) -> ExplainReference:
    """Training means, category shares and a seeded random sample of training rows
    (unweighted, so the sampled explainer's base value estimates the training mean
    output without bias)."""
    means = {f.name: float(X_train[f.name].mean()) for f in card.features if f.kind == "numeric"}
    shares = {
        f.name: {
            str(k): float(v)
            for k, v in X_train[f.name].astype(str).value_counts(normalize=True).items()
        }
        for f in card.features
        if f.kind == "categorical"
    }
    complete = X_train[card.feature_names].dropna()  # background rows must be valid input
    rows = complete.sample(n=min(BACKGROUND_ROWS, len(complete)), random_state=seed)
    background = [
        {str(k): (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
        for rec in rows[card.feature_names].to_dict(orient="records")
    ]
    return ExplainReference(means=means, category_shares=shares, background=background)


def global_importance(explainer: Explainer, X: pd.DataFrame, max_rows: int = 200) -> Importance:
    """Mean |attribution| of the explained output (predicted class probability, or the
    value) per feature over ``X`` (the held-out test split; at most ``max_rows`` rows)."""
    rows = X if len(X) <= max_rows else X.sample(n=max_rows, random_state=0)
    ex = explainer.explain(rows[explainer.names], budget_seconds=None)
    mean_abs = np.abs(ex.attributions[:, 0, :]).mean(axis=0)
    return Importance(
        method=ex.method,
        output=ex.output,
        rows=len(rows),
        values={n: round(float(v), 8) for n, v in zip(ex.feature_names, mean_abs, strict=True)},
    )


def annotate_card(
    card: ModelCard,
    predictor: Predictor,
    X_train: pd.DataFrame,
    X_test: pd.DataFrame,
    seed: int,
) -> tuple[ModelCard, str | None]:
    """The card with its explanation reference and global importance; the second item
    says why importance is missing, if it is."""
    card = card.model_copy(update={"explain": reference_of(X_train, card, seed)})
    try:
        explainer = explainer_for(predictor, card, budget_seconds=float("inf"))
        importance = global_importance(explainer, X_test)
    except ExplainUnavailableError as exc:
        return card, f"no global importance: {exc}"
    return card.model_copy(update={"importance": importance}), None
