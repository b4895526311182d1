"""One predict interface over every framework, used by evaluation and serving alike.

Classifiers return class probabilities (one column per entry of ``card.classes``);
regressors return values. Labels are the argmax of the probabilities, so both
frameworks and both sides (training, serving) agree on them by construction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SKLEARN_FILE = "saved_model.pkl"  # bentoml.sklearn's file name
KERAS_FILE = "model.keras"
PREPROCESSOR_FILE = "preprocessor.joblib"


@dataclass(frozen=True)
class Output:
    """Predictions for a batch: labels (class labels or values) and, for classifiers,
    the probability matrix."""

    predictions: list[Any]
    probabilities: np.ndarray | None


class Predictor(ABC):
    def __init__(self, task: str, classes: list[Any] | None) -> None:
        self.task = task
        self.classes = classes

    @abstractmethod
    def scores(self, X: pd.DataFrame) -> np.ndarray:
        """(n, k) class probabilities, or (n,) predicted values."""

    def predict(self, X: pd.DataFrame) -> Output:
        scores = self.scores(X)
        if self.task == "regression":
            return Output(predictions=[float(v) for v in scores.reshape(-1)], probabilities=None)
        assert self.classes is not None
        idx = scores.argmax(axis=1)
        return Output(predictions=[self.classes[i] for i in idx], probabilities=scores)


class SklearnPredictor(Predictor):
    def __init__(self, estimator: Any, task: str, classes: list[Any] | None) -> None:
        super().__init__(task, classes)
        self.estimator = estimator

    def scores(self, X: pd.DataFrame) -> np.ndarray:
        if self.task == "regression":
            return np.asarray(self.estimator.predict(X), dtype=float)
        return np.asarray(self.estimator.predict_proba(X), dtype=float)


class KerasPredictor(Predictor):
    """A sklearn preprocessor (scaling, one-hot) in front of a Keras network.

    Calls the model directly (``model(x)``): ``model.predict`` costs ~40 ms per
    call in set-up alone, far more than the network itself.
    """

    def __init__(self, preprocessor: Any, model: Any, task: str, classes: list[Any] | None):
        super().__init__(task, classes)
        self.preprocessor = preprocessor
        self.model = model

    def scores(self, X: pd.DataFrame) -> np.ndarray:
        x = np.asarray(self.preprocessor.transform(X), dtype=np.float32)
        out = np.asarray(self.model(x, training=False), dtype=float)
        if self.task == "regression":
            return out.reshape(-1)
        if out.shape[1] == 1:  # sigmoid head: P(class 1)
            return np.hstack([1.0 - out, out])
        return out


def load_predictor(
    model_dir: Path, framework: str, task: str, classes: list[Any] | None
) -> Predictor:
    """Load the saved artifacts of a model directory (TensorFlow only for Keras)."""
    import joblib

    if framework == "sklearn":
        return SklearnPredictor(joblib.load(model_dir / SKLEARN_FILE), task, classes)
    if framework == "keras":
        import keras  # deferred: TensorFlow costs seconds and hundreds of MB

        model = keras.saving.load_model(model_dir / KERAS_FILE, compile=False)
        preprocessor = joblib.load(model_dir / PREPROCESSOR_FILE)
        return KerasPredictor(preprocessor, model, task, classes)
    raise ValueError(f"unknown framework {framework!r}")
