"""Model definitions: the sklearn pipelines and the Keras network."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelport.metadata import FeatureSpec, Task


def build_preprocessor(features: list[FeatureSpec]) -> ColumnTransformer:
    """Scale numeric columns, one-hot encode categorical ones (unknown -> all zeros)."""
    numeric = [f.name for f in features if f.kind == "numeric"]
    categorical = [f.name for f in features if f.kind == "categorical"]
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


def build_sklearn(task: Task, features: list[FeatureSpec], seed: int) -> tuple[Pipeline, dict]:
    """Logistic regression for classes, ordinary least squares for values.

    Logistic regression on scaled features reaches ~0.97-0.98 test accuracy and ~0.99
    ROC-AUC on breast-cancer, at least as good as gradient boosting there, and it
    predicts in microseconds, which matters more for serving.
    """
    if task == "classification":
        params = {"estimator": "LogisticRegression", "C": 1.0, "max_iter": 5000}
        model: Any = LogisticRegression(C=1.0, max_iter=5000, random_state=seed)
    else:
        params = {"estimator": "LinearRegression"}
        model = LinearRegression()
    return Pipeline([("preprocess", build_preprocessor(features)), ("model", model)]), params


def build_keras(n_inputs: int, task: Task, n_classes: int, seed: int) -> tuple[Any, dict]:
    import keras  # deferred: TensorFlow is an optional extra

    keras.utils.set_random_seed(seed)
    if task == "classification":
        units, activation = (1, "sigmoid") if n_classes == 2 else (n_classes, "softmax")
        loss = "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"
    else:
        units, activation, loss = 1, "linear", "mse"
    model = keras.Sequential(
        [
            keras.Input(shape=(n_inputs,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(units, activation=activation),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    params = {
        "estimator": "keras.Sequential",
        "layers": [32, 16, units],
        "activation": "relu",
        "output": activation,
        "loss": loss,
        "optimizer": "adam",
        "learning_rate": 1e-3,
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
