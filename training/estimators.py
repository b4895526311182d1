"""Model definitions: the estimator families, their sklearn pipelines and the Keras network.

Every family works for both tasks (classifier or regressor) and has defaults that
suit small tabular data sets; ``--param key=value`` overrides any parameter the
underlying scikit-learn estimator has. ``grid`` is what ``--search`` tries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelport.features import model_columns, needs_rules
from modelport.metadata import FeatureSpec, ImputeStrategy, Task


class ParamError(ValueError):
    """An unknown estimator or a bad ``--param``, with a message for the user."""


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    classifier: Callable[[int], Any]  # seed -> unfitted estimator
    regressor: Callable[[int], Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)  # --search candidates


def _linear_clf(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=5000, random_state=seed)


def _linear_reg(seed: int) -> Any:
    from sklearn.linear_model import LinearRegression

    return LinearRegression()


def _ridge_reg(seed: int) -> Any:
    from sklearn.linear_model import Ridge

    return Ridge(alpha=1.0)


def _lasso_clf(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        l1_ratio=1.0, solver="liblinear", C=1.0, max_iter=5000, random_state=seed
    )


def _lasso_reg(seed: int) -> Any:
    from sklearn.linear_model import Lasso

    return Lasso(alpha=0.1, max_iter=20000, random_state=seed)


def _tree_clf(seed: int) -> Any:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_depth=6, min_samples_leaf=5, random_state=seed)


def _tree_reg(seed: int) -> Any:
    from sklearn.tree import DecisionTreeRegressor

    return DecisionTreeRegressor(max_depth=6, min_samples_leaf=5, random_state=seed)


def _forest_clf(seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=200, min_samples_leaf=2, random_state=seed)


def _forest_reg(seed: int) -> Any:
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=seed)


def _hgb_clf(seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(learning_rate=0.1, max_iter=200, random_state=seed)


def _hgb_reg(seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(learning_rate=0.1, max_iter=200, random_state=seed)


def _svm_clf(seed: int) -> Any:
    from sklearn.svm import SVC

    # probability=True: served classifiers answer class probabilities.
    return SVC(C=1.0, kernel="rbf", probability=True, random_state=seed)


def _svm_reg(seed: int) -> Any:
    from sklearn.svm import SVR

    return SVR(C=1.0, kernel="rbf", epsilon=0.1)


def _knn_clf(seed: int) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=10, weights="distance")


def _knn_reg(seed: int) -> Any:
    from sklearn.neighbors import KNeighborsRegressor

    return KNeighborsRegressor(n_neighbors=10, weights="distance")


KERAS = "keras-mlp"

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "linear",
            "logistic regression (classes) / ordinary least squares (values)",
            _linear_clf,
            _linear_reg,
            {"C": [0.1, 1.0, 10.0]},
        ),
        Family(
            "ridge",
            "L2-regularised logistic regression / ridge regression",
            _linear_clf,
            _ridge_reg,
            {"C": [0.01, 0.1, 1.0], "alpha": [0.1, 1.0, 10.0]},
        ),
        Family(
            "lasso",
            "L1-regularised logistic regression / lasso",
            _lasso_clf,
            _lasso_reg,
            {"C": [0.1, 1.0], "alpha": [0.01, 0.1, 1.0]},
        ),
        Family(
            "decision-tree",
            "a single decision tree (depth 6)",
            _tree_clf,
            _tree_reg,
            {"max_depth": [3, 6, 12]},
        ),
        Family(
            "random-forest",
            "random forest, 200 trees",
            _forest_clf,
            _forest_reg,
            {"n_estimators": [100, 300], "min_samples_leaf": [1, 3]},
        ),
        Family(
            "hist-gradient-boosting",
            "histogram gradient boosting, 200 iterations",
            _hgb_clf,
            _hgb_reg,
            {"learning_rate": [0.05, 0.1], "max_leaf_nodes": [15, 31]},
        ),
        Family(
            "svm",
            "support vector machine, RBF kernel",
            _svm_clf,
            _svm_reg,
            {"C": [0.3, 1.0, 3.0, 10.0]},
        ),
        Family(
            "knn",
            "k-nearest neighbours, distance-weighted",
            _knn_clf,
            _knn_reg,
            {"n_neighbors": [5, 10, 20]},
        ),
    )
}
ALIASES = {
    "logistic": "linear",
    "tree": "decision-tree",
    "forest": "random-forest",
    "rf": "random-forest",
    "hgb": "hist-gradient-boosting",
    "gradient-boosting": "hist-gradient-boosting",
    "k-nearest-neighbours": "knn",
    "mlp": KERAS,
    "keras": KERAS,
}
NAMES = (*FAMILIES, KERAS)
KERAS_PARAMS: dict[str, Any] = {
    "layers": [32, 16],
    "learning_rate": 1e-3,
    "epochs": None,  # None: MODELPORT_KERAS_EPOCHS
    "patience": None,
    "batch_size": None,
}


def resolve_name(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key not in NAMES:
        raise ParamError(f"--estimator {name!r}: unknown; choose one of: {', '.join(NAMES)}")
    return key


def parse_value(text: str) -> Any:
    """``--param`` values: JSON (numbers, true/false, null, lists), else the text."""
    lowered = text.strip()
    if lowered in ("True", "False", "None"):
        lowered = lowered.lower().replace("none", "null")
    try:
        return json.loads(lowered)
    except json.JSONDecodeError:
        return text


def parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"--param {pair!r}: expected key=value, e.g. --param max_depth=4")
        params[key.strip()] = parse_value(value)
    return params


def make_estimator(family: str, task: Task, seed: int, overrides: dict[str, Any]) -> Any:
    """The unfitted estimator of ``family`` with ``overrides`` checked and applied."""
    fam = FAMILIES[family]
    est = (fam.classifier if task == "classification" else fam.regressor)(seed)
    known = est.get_params()
    unknown = [k for k in overrides if k not in known]
    if unknown:
        raise ParamError(
            f"--param {unknown[0]!r}: not a parameter of {family} ({type(est).__name__}); "
            f"it has: {', '.join(sorted(known))}"
        )
    est.set_params(**overrides)
    try:
        est._validate_params()  # scikit-learn's own check, before any fitting
    except (ValueError, TypeError) as exc:
        raise ParamError(f"--param for {family}: {exc}") from None
    return est


def card_params(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as the model card can hold them (BentoML metadata refuses None)."""
    out: dict[str, Any] = {}
    for key, value in sorted(params.items()):
        plain = isinstance(value, bool | int | float | str)
        if plain or (
            isinstance(value, list) and all(isinstance(v, int | float | str) for v in value)
        ):
            out[key] = value
        else:
            out[key] = repr(value)  # None, objects
    return out


def estimator_params(est: Any) -> dict[str, Any]:
    """The estimator's parameters, for the model card."""
    return card_params(est.get_params())


def build_preprocessor(features: list[FeatureSpec]) -> ColumnTransformer:
    """Scale numeric columns (and date parts), one-hot encode categorical ones
    (unknown -> all zeros)."""
    numeric, categorical = model_columns(features)
    steps: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps.append(("numeric", StandardScaler(), numeric))
    if categorical:
        steps.append(
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                categorical,
            )
        )
    return ColumnTransformer(steps, sparse_threshold=0.0)


def build_input(features: list[FeatureSpec], impute: ImputeStrategy) -> list[tuple[str, Any]]:
    """The pipeline steps from raw input to the model's array: the raw-value rules
    (only when a feature needs them, so plain numeric models keep the fast path),
    then the encoders."""
    from modelport.steps import RawFeatures

    impute_features = tuple(f.name for f in features if f.missing and impute != "drop")
    steps: list[tuple[str, Any]] = []
    if impute_features or needs_rules(features):
        steps.append(("raw", RawFeatures(features, impute, impute_features)))
    steps.append(("preprocess", build_preprocessor(features)))
    return steps


def build_sklearn(
    task: Task,
    features: list[FeatureSpec],
    seed: int,
    family: str = "linear",
    overrides: dict[str, Any] | None = None,
    impute: ImputeStrategy = "median",
) -> tuple[Pipeline, dict]:
    """The pipeline of one family; logistic/linear regression by default.

    Logistic regression on scaled features reaches ~0.97-0.98 test accuracy and ~0.99
    ROC-AUC on breast-cancer, at least as good as gradient boosting there, and it
    predicts in microseconds, which matters more for serving.
    """
    est = make_estimator(family, task, seed, overrides or {})
    pipeline = Pipeline([*build_input(features, impute), ("model", est)])
    params = {
        "estimator": type(est).__name__,
        "family": family,
        "overrides": card_params(overrides or {}),
        "model_params": estimator_params(est),
    }
    return pipeline, params


def keras_settings(overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = [k for k in overrides if k not in KERAS_PARAMS]
    if unknown:
        raise ParamError(
            f"--param {unknown[0]!r}: not a parameter of {KERAS}; it has: {', '.join(KERAS_PARAMS)}"
        )
    merged = {**KERAS_PARAMS, **overrides}
    layers = merged["layers"]
    if isinstance(layers, int):
        layers = [layers]
    if isinstance(layers, str):
        try:
            layers = [int(v) for v in layers.split(",") if v.strip()]
        except ValueError:
            layers = []
    if (
        not isinstance(layers, list)
        or not layers
        or not all(isinstance(v, int) and v > 0 for v in layers)
    ):
        raise ParamError(f"--param layers={overrides.get('layers')!r}: expected e.g. 64,32")
    merged["layers"] = layers
    lr = merged["learning_rate"]
    if not isinstance(lr, int | float) or not 0 < lr < 1:
        raise ParamError(f"--param learning_rate={lr!r}: expected a number in (0, 1)")
    for key in ("epochs", "patience", "batch_size"):
        v = merged[key]
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ParamError(f"--param {key}={v!r}: expected a positive integer")
    return merged


def build_keras(
    n_inputs: int,
    task: Task,
    n_classes: int,
    seed: int,
    layers: list[int] | None = None,
    learning_rate: float = 1e-3,
) -> tuple[Any, dict]:
    import keras  # deferred: TensorFlow is an optional extra

    keras.utils.set_random_seed(seed)
    hidden = layers or [32, 16]
    if task == "classification":
        units, activation = (1, "sigmoid") if n_classes == 2 else (n_classes, "softmax")
        loss = "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"
    else:
        units, activation, loss = 1, "linear", "mse"
    model = keras.Sequential(
        [
            keras.Input(shape=(n_inputs,)),
            *[keras.layers.Dense(n, activation="relu") for n in hidden],
            keras.layers.Dense(units, activation=activation),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    params = {
        "estimator": "keras.Sequential",
        "family": KERAS,
        "layers": [*hidden, units],
        "activation": "relu",
        "output": activation,
        "loss": loss,
        "optimizer": "adam",
        "learning_rate": learning_rate,
    }
    return model, params


def fit_keras(
    model: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int,
    patience: int,
    batch_size: int,
    on_epoch: Callable[[int, dict[str, float]], None],
) -> dict[str, list[float]]:
    """Fit with early stopping on validation loss; reports each epoch to ``on_epoch``."""
    import keras

    class _Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            on_epoch(epoch + 1, {k: float(v) for k, v in (logs or {}).items()})

    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
        shuffle=True,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            ),
            _Progress(),
        ],
    )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}
