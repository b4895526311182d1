"""One predict interface over every framework, used by evaluation and serving alike.

Classifiers return class probabilities (one column per entry of ``card.classes``);
regressors return values. Labels are the argmax of the probabilities, so both
frameworks and both sides (training, serving) agree on them by construction.
"""

from __future__ import annotations

import copy
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
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


Transform = Callable[[np.ndarray], np.ndarray]


def _indices(columns: Any, names: list[str]) -> list[int] | None:
    """Positions of a ColumnTransformer's column selection among ``names``."""
    if isinstance(columns, str):
        columns = [columns]
    if isinstance(columns, list | tuple | np.ndarray):
        out: list[int] = []
        for c in columns:
            if isinstance(c, str) and c in names:
                out.append(names.index(c))
            elif isinstance(c, int | np.integer) and not isinstance(c, bool):
                out.append(int(c))
            else:
                return None
        return out
    return None


def _array_transform(trans: Any) -> Transform:
    """``trans.transform`` for arrays, without sklearn's per-call input checks where
    the arithmetic is known (StandardScaler: the same two operations, so the same
    floats)."""
    from sklearn.preprocessing import StandardScaler

    if type(trans) is StandardScaler:
        mean = trans.mean_ if trans.with_mean else None
        scale = trans.scale_ if trans.with_std else None

        def scaled(X: np.ndarray) -> np.ndarray:
            Z = X - mean if mean is not None else X.copy()
            if scale is not None:
                Z /= scale
            return Z

        return scaled
    fast = copy.copy(trans)  # shallow: shares the fitted arrays
    if hasattr(fast, "feature_names_in_"):
        # Fitted on named columns; given arrays in the same order, the name check
        # only warns. The load-time comparison guards the order.
        del fast.feature_names_in_
    return fast.transform


def compile_columns(ct: Any, names: list[str]) -> Transform | None:
    """A fitted ColumnTransformer as plain array code for all-numeric input in
    ``names`` order, or ``None`` when its layout is not one this understands.

    The DataFrame machinery (column lookup by name, output containers, joblib
    dispatch) costs ~1.5 ms a call, several times the transforms themselves.
    Callers check the result against the original before using it.
    """
    from sklearn.compose import ColumnTransformer

    if not isinstance(ct, ColumnTransformer) or ct.sparse_output_:
        return None
    parts: list[tuple[Any, list[int]]] = []
    for _, trans, columns in ct.transformers_:
        if isinstance(trans, str) and trans == "drop":
            continue
        idx = _indices(columns, names)
        if idx is None:
            return None
        if not idx:
            continue
        if isinstance(trans, str):
            if trans != "passthrough":
                return None
            parts.append((None, idx))
            continue
        parts.append((_array_transform(trans), idx))

    def transform(X: np.ndarray) -> np.ndarray:
        outs = [X[:, idx] if fn is None else fn(X[:, idx]) for fn, idx in parts]
        return outs[0] if len(outs) == 1 else np.hstack(outs)

    return transform


class Predictor(ABC):
    def __init__(self, task: str, classes: list[Any] | None) -> None:
        self.task = task
        self.classes = classes
        self.feature_names: list[str] = []
        self.artifact = "native"  # which serving form of the model this calls

    @abstractmethod
    def scores(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """(n, k) class probabilities, or (n,) predicted values. ``X``: a DataFrame, or
        for all-numeric models a float array with columns in feature order."""

    def enable_fast_path(
        self,
        feature_names: list[str],
        sample: pd.DataFrame | np.ndarray,
        expected: np.ndarray | None = None,
    ) -> str | None:
        """Switch to array-only code where the model allows it, if it reproduces the
        original on ``sample``: a DataFrame (the original path is run on it), or an
        array in ``feature_names`` order with the original's recorded ``expected``
        scores (which spares serving importing pandas). Returns why not, or ``None``."""
        return "not available for this model type"

    def _frame(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        if not isinstance(X, np.ndarray):
            return X
        import pandas as pd  # deferred: serving all-numeric models never needs it

        return pd.DataFrame(X, columns=self.feature_names)

    def predict(self, X: pd.DataFrame | np.ndarray) -> Output:
        scores = self.scores(X)
        if self.task == "regression":
            return Output(predictions=[float(v) for v in scores.reshape(-1)], probabilities=None)
        assert self.classes is not None
        idx = scores.argmax(axis=1)
        return Output(predictions=[self.classes[i] for i in idx], probabilities=scores)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-9, atol=1e-12)


def _recorded(a: np.ndarray, b: np.ndarray) -> bool:
    # Recorded outputs are stored rounded to 8 decimals.
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-7, atol=1e-7)


LINKS = ("identity", "logistic", "softmax")


class LinearHead:
    """A fitted linear model's arithmetic without scikit-learn: its
    ``decision_function`` (``Z @ coef.T + intercept``, the same operations) and the
    link LogisticRegression applies. scikit-learn's own ``predict_proba`` spends
    most of a single-row call validating its input."""

    def __init__(self, coef: Any, intercept: Any, link: str) -> None:
        if link not in LINKS:
            raise ValueError(f"unknown link {link!r}")
        self.coef = np.asarray(coef, dtype=float)
        self.intercept = np.asarray(intercept, dtype=float)
        self.link = link

    def decision(self, Z: np.ndarray) -> np.ndarray:
        return Z @ self.coef.T + self.intercept

    def predict(self, Z: np.ndarray) -> np.ndarray:
        return self.decision(Z).reshape(-1)

    def predict_proba(self, Z: np.ndarray) -> np.ndarray:
        d = self.decision(Z)
        if self.link == "logistic":  # binary: P(class 1) = expit(d)
            p = 1.0 / (1.0 + np.exp(-d[:, 0]))
            return np.column_stack([1.0 - p, p])
        if self.link == "softmax":
            e = np.exp(d - d.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        raise ValueError("predict_proba needs the logistic or softmax link")


# Estimators whose prediction is exactly ``LinearHead``'s arithmetic on their coef_
# and intercept_ (LogisticRegression: binary or multinomial).
_LINEAR_REGRESSORS = frozenset({"LinearRegression", "Ridge", "Lasso", "ElasticNet"})


def linear_head(est: Any) -> LinearHead | None:
    name = type(est).__name__
    if not (hasattr(est, "coef_") and hasattr(est, "intercept_")):
        return None
    if name in _LINEAR_REGRESSORS:
        coef = np.atleast_2d(est.coef_)
        if coef.shape[0] != 1:
            return None
        return LinearHead(coef, np.atleast_1d(est.intercept_), "identity")
    if name == "LogisticRegression":
        n = len(est.classes_)
        link = "logistic" if n == 2 else "softmax"
        if est.coef_.shape[0] != (1 if n == 2 else n):
            return None
        return LinearHead(est.coef_, est.intercept_, link)
    return None


def _scaling(trans: Any, n: int) -> tuple[list[float], list[float]] | None:
    """(mean, scale) of a StandardScaler or passthrough over ``n`` columns."""
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    if isinstance(trans, str) or type(trans) is FunctionTransformer:
        # "passthrough", which fitting turns into an identity FunctionTransformer
        identity = trans == "passthrough" if isinstance(trans, str) else trans.func is None
        return ([0.0] * n, [1.0] * n) if identity else None
    if type(trans) is not StandardScaler:
        return None
    mean = trans.mean_ if trans.with_mean else np.zeros(n)
    scale = trans.scale_ if trans.with_std else np.ones(n)
    return [float(v) for v in mean], [float(v) for v in scale]


def linear_form(estimator: Any, feature_names: list[str]) -> dict[str, Any] | None:
    """At training: a fitted ``Pipeline([ColumnTransformer of StandardScaler or
    passthrough over numeric columns], linear model)`` as plain arrays (the card's
    ``linear`` field), so serving needs neither scikit-learn nor SciPy to load it.
    ``None`` for any other layout."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(estimator, Pipeline) or len(estimator.steps) != 2:
        return None
    ct, head = estimator.steps[0][1], linear_head(estimator.steps[1][1])
    if not isinstance(ct, ColumnTransformer) or head is None or ct.sparse_output_:
        return None
    columns: list[int] = []
    mean: list[float] = []
    scale: list[float] = []
    for _, trans, cols in ct.transformers_:
        if isinstance(trans, str) and trans == "drop":
            continue
        idx = _indices(cols, feature_names)
        if idx is None:
            return None
        if not idx:
            continue
        scaling = _scaling(trans, len(idx))
        if scaling is None:
            return None
        columns += idx
        mean += scaling[0]
        scale += scaling[1]
    if head.coef.shape[1] != len(columns):
        return None
    return {
        "columns": columns,
        "mean": mean,
        "scale": scale,
        "coef": head.coef.tolist(),
        "intercept": head.intercept.tolist(),
        "link": head.link,
    }


def _linear_transform(columns: list[int], mean: Any, scale: Any) -> Transform:
    idx = np.asarray(columns, dtype=int)
    m, sc = np.asarray(mean, dtype=float), np.asarray(scale, dtype=float)

    def transform(X: np.ndarray) -> np.ndarray:
        Z = X[:, idx] - m  # StandardScaler's two operations, in its order
        Z /= sc
        return Z

    return transform


class SklearnPredictor(Predictor):
    """A fitted scikit-learn estimator. With ``loader`` instead of an estimator, the
    pickle is read (and scikit-learn imported) only when something needs it: a model
    served from its linear form (:meth:`use_linear_form`) may never."""

    def __init__(
        self,
        estimator: Any,
        task: str,
        classes: list[Any] | None,
        loader: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(task, classes)
        if estimator is None and loader is None:
            raise ValueError("an estimator or a loader is needed")
        self._estimator = estimator
        self._loader = loader
        self._fast: Transform | None = None
        self._head: Any = None

    @property
    def estimator(self) -> Any:
        if self._estimator is None:
            assert self._loader is not None
            self._estimator = self._loader()
        return self._estimator

    @property
    def loaded(self) -> bool:
        """Whether the pickled estimator has been read."""
        return self._estimator is not None

    def use_linear_form(
        self, form: dict[str, Any], feature_names: list[str], X: np.ndarray, expected: np.ndarray
    ) -> str | None:
        """Serve all-numeric rows from the card's linear form (:func:`linear_form`) if
        it reproduces the recorded ``expected`` scores on ``X``; returns why not."""
        self.feature_names = list(feature_names)
        try:
            fast = _linear_transform(form["columns"], form["mean"], form["scale"])
            head = LinearHead(form["coef"], form["intercept"], form["link"])
            if (head.link == "identity") != (self.task == "regression"):
                return f"link {head.link} does not fit a {self.task} model"
            self._fast, self._head = fast, head
            ok = _recorded(self.scores(X), np.asarray(expected, dtype=float))
        except Exception as exc:  # a malformed form: keep the pickled model
            self._fast = self._head = None
            return f"linear form failed: {exc!r}"
        if not ok:
            self._fast = self._head = None
            return "linear form does not reproduce the recorded outputs"
        return None

    def _reference(self, X: pd.DataFrame) -> np.ndarray:
        if self.task == "regression":
            return np.asarray(self.estimator.predict(X), dtype=float)
        return np.asarray(self.estimator.predict_proba(X), dtype=float)

    def scores(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if self._fast is not None and isinstance(X, np.ndarray):
            Z = self._fast(X)
            if self.task == "regression":
                return np.asarray(self._head.predict(Z), dtype=float)
            return np.asarray(self._head.predict_proba(Z), dtype=float)
        return self._reference(self._frame(X))

    def enable_fast_path(
        self,
        feature_names: list[str],
        sample: pd.DataFrame | np.ndarray,
        expected: np.ndarray | None = None,
    ) -> str | None:
        from sklearn.pipeline import Pipeline

        self.feature_names = list(feature_names)
        est = self.estimator
        if not isinstance(est, Pipeline) or len(est.steps) < 2:
            return "not a Pipeline starting with a ColumnTransformer"
        fast = compile_columns(est.steps[0][1], self.feature_names)
        head = est[1:] if len(est.steps) > 2 else est.steps[-1][1]
        if fast is None or hasattr(head, "feature_names_in_"):
            return "column layout not supported"
        head = linear_head(head) or head  # checked below like the rest
        if isinstance(sample, np.ndarray):
            if expected is None:
                raise ValueError("an array sample needs the expected scores")
            X, reference = sample, np.asarray(expected, dtype=float)
            close = _recorded
        else:
            X, reference = sample[self.feature_names].to_numpy(dtype=float), None
            close = _same
        self._fast, self._head = fast, head
        try:
            if reference is None:
                reference = self._reference(sample)
            ok = close(self.scores(X), reference)
        except Exception as exc:  # any failure means: keep the original path
            ok, why = False, f"fast path failed: {exc!r}"
        else:
            why = "fast path does not reproduce the model's output"
        if not ok:
            self._fast = self._head = None
            return why
        return None


class KerasPredictor(Predictor):
    """A sklearn preprocessor (scaling, one-hot) in front of a Keras network.

    Calls the model directly (``model(x)``): ``model.predict`` costs ~40 ms per
    call in set-up alone, far more than the network itself.
    """

    def __init__(self, preprocessor: Any, model: Any, task: str, classes: list[Any] | None):
        super().__init__(task, classes)
        self.preprocessor = preprocessor
        self.model = model
        self._fast: Transform | None = None

    def _features(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if self._fast is not None and isinstance(X, np.ndarray):
            return np.asarray(self._fast(X), dtype=np.float32)
        return np.asarray(self.preprocessor.transform(self._frame(X)), dtype=np.float32)

    def enable_fast_path(
        self,
        feature_names: list[str],
        sample: pd.DataFrame | np.ndarray,
        expected: np.ndarray | None = None,
    ) -> str | None:
        if isinstance(sample, np.ndarray):
            return "needs a DataFrame sample (the preprocessor is compared, not the scores)"
        self.feature_names = list(feature_names)
        fast = compile_columns(self.preprocessor, self.feature_names)
        if fast is None:
            return "column layout not supported"
        X = sample[self.feature_names].to_numpy(dtype=float)
        reference = np.asarray(self.preprocessor.transform(sample), dtype=float)
        try:
            ok = _same(np.asarray(fast(X), dtype=float), reference)
        except Exception:  # any failure means: keep the original path
            ok = False
        if not ok:
            return "fast preprocessing does not reproduce the original"
        self._fast = fast
        return None

    def scores(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        x = self._features(X)
        out = np.asarray(self.model(x, training=False), dtype=float)
        if self.task == "regression":
            return out.reshape(-1)
        if out.shape[1] == 1:  # sigmoid head: P(class 1)
            return np.hstack([1.0 - out, out])
        return out


KERAS_ARTIFACTS = ("keras", "saved_model", "tflite")
SAVED_MODEL_DIR = "saved_model"
TFLITE_FILE = "model.tflite"


class TFLiteModel:
    """A TensorFlow Lite model called like a Keras one: ``model(x) -> array``.

    One interpreter per process, which is not thread-safe: the service predicts on its
    event loop while sampled explanations call the model from worker threads, so each
    call holds a lock (uncontended: well under a microsecond). The input is resized
    when the batch size changes.
    """

    def __init__(self, path: Path) -> None:
        import warnings

        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # TensorFlow's own copy (deprecated, still shipped)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import tensorflow as tf
            Interpreter = tf.lite.Interpreter
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._it = Interpreter(model_path=str(path))
        self._it.allocate_tensors()
        self._in = self._it.get_input_details()[0]["index"]
        self._out = self._it.get_output_details()[0]["index"]
        self._shape: tuple[int, ...] = tuple(self._it.get_input_details()[0]["shape"])
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        with self._lock:
            if x.shape != self._shape:
                self._it.resize_tensor_input(self._in, x.shape)
                self._it.allocate_tensors()
                self._shape = x.shape
            self._it.set_tensor(self._in, x)
            self._it.invoke()
            return np.array(self._it.get_tensor(self._out))


def load_keras_artifact(model_dir: Path, artifact: str) -> Any:
    """The network as a callable ``x -> scores`` from one of its serving forms."""
    if artifact == "tflite":
        return TFLiteModel(model_dir / TFLITE_FILE)
    if artifact == "saved_model":
        import tensorflow as tf

        # Keep the loaded object alive: its signature references its variables.
        loaded = tf.saved_model.load(str(model_dir / SAVED_MODEL_DIR))
        return lambda x, training=False: loaded.serve(x).numpy()
    import keras  # deferred: TensorFlow costs seconds and hundreds of MB

    return keras.saving.load_model(model_dir / KERAS_FILE, compile=False)


def load_predictor(
    model_dir: Path,
    framework: str,
    task: str,
    classes: list[Any] | None,
    artifact: str = "keras",
) -> Predictor:
    """Load the saved artifacts of a model directory (TensorFlow only for Keras)."""
    import joblib

    if framework == "sklearn":
        return SklearnPredictor(joblib.load(model_dir / SKLEARN_FILE), task, classes)
    if framework == "keras":
        model = load_keras_artifact(model_dir, artifact)
        preprocessor = joblib.load(model_dir / PREPROCESSOR_FILE)
        predictor = KerasPredictor(preprocessor, model, task, classes)
        predictor.artifact = artifact
        return predictor
    raise ValueError(f"unknown framework {framework!r}")


def deferred_sklearn(model_dir: Path, task: str, classes: list[Any] | None) -> SklearnPredictor:
    """A scikit-learn model whose pickle is read on first need (see SklearnPredictor)."""

    def load() -> Any:
        import joblib
        import sklearn

        # As the service sets it for eagerly loaded models (service.runtime).
        sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
        return joblib.load(model_dir / SKLEARN_FILE)

    return SklearnPredictor(None, task, classes, loader=load)
