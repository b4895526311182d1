"""A scikit-learn pipeline served by ONNX Runtime (its ``onnx`` artifact).

Training converts the fitted pipeline with skl2onnx (``training.optimize``) into one of
two input layouts, told apart here by the graph's inputs:
- all-numeric models: one float32 input ``X`` of shape (n, features), features in
  card order (the arrays the service already builds for them);
- models with categorical columns: one (n, 1) input per feature, named after it,
  float32 for numbers and strings for categories (fed from the request frame).

Classifiers answer the ``probabilities`` output (columns in ``card.classes`` order,
as fitted); regressors their single output. ONNX Runtime computes in float32, so the
outputs differ from the pickled pipeline's in the 7th digit: the artifact was judged
on the test split at training and self-tests against its own recorded sample.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.predictors import Predictor

if TYPE_CHECKING:
    import pandas as pd

ONNX_FILE = "model.onnx"
ARRAY_INPUT = "X"  # the single input of all-numeric models


class OnnxUnavailableError(RuntimeError):
    """onnxruntime is not installed where an ONNX artifact should run."""


def session(model: bytes | Path) -> Any:
    """An ONNX Runtime session on one thread: the service runs one worker per core,
    and a single row is far too small to split (extra threads only spin)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise OnnxUnavailableError(
            "onnxruntime is not installed (images include it only when a model serves "
            "its ONNX form; rebuild with MODELPORT_SKLEARN_ARTIFACT=onnx in the bentofile)"
        ) from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no optimizer chatter in the server log
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxPredictor(Predictor):
    """The ``onnx`` serving form. ``native`` loads the pickled pipeline on first use,
    for explanations (exact linear and tree methods need the scikit-learn model)."""

    def __init__(
        self,
        sess: Any,
        task: str,
        classes: list[Any] | None,
        feature_names: list[str],
        native: Callable[[], Predictor] | None = None,
    ) -> None:
        super().__init__(task, classes)
        self.artifact = "onnx"
        self.session = sess
        self.feature_names = list(feature_names)
        inputs = sess.get_inputs()
        self._array = len(inputs) == 1 and inputs[0].name == ARRAY_INPUT
        # name -> True when the input takes strings (categorical columns)
        self._columns = {i.name: i.type == "tensor(string)" for i in inputs}
        missing = [] if self._array else [n for n in self._columns if n not in feature_names]
        if missing:
            raise ValueError(f"ONNX inputs {missing} are not features of this model")
        outputs = [o.name for o in sess.get_outputs()]
        if task == "classification":
            if "probabilities" not in outputs:
                raise ValueError(f"ONNX classifier has no probabilities output ({outputs})")
            self._output = "probabilities"
        else:
            self._output = outputs[0]
        self._native_loader = native
        self._native: Predictor | None = None
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        model_dir: Path,
        task: str,
        classes: list[Any] | None,
        feature_names: list[str],
        native: Callable[[], Predictor] | None = None,
    ) -> OnnxPredictor:
        return cls(session(model_dir / ONNX_FILE), task, classes, feature_names, native)

    @property
    def native(self) -> Predictor:
        """The pickled pipeline this was converted from (loaded once, on first use)."""
        if self._native_loader is None:
            raise RuntimeError("no native model to load")
        with self._lock:
            if self._native is None:
                self._native = self._native_loader()
                self._native.feature_names = self.feature_names
        return self._native

    def _feed(self, X: pd.DataFrame | np.ndarray) -> dict[str, np.ndarray]:
        if self._array:
            if isinstance(X, np.ndarray):
                return {ARRAY_INPUT: np.ascontiguousarray(X, dtype=np.float32)}
            return {ARRAY_INPUT: X[self.feature_names].to_numpy(dtype=np.float32)}
        frame = self._frame(X)
        feed = {}
        for name, text in self._columns.items():
            col = frame[name]
            feed[name] = (
                col.astype(str).to_numpy(dtype=object) if text else col.to_numpy(np.float32)
            ).reshape(-1, 1)
        return feed

    def scores(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        out = np.asarray(self.session.run([self._output], self._feed(X))[0], dtype=float)
        return out.reshape(-1) if self.task == "regression" else out

    def enable_fast_path(
        self,
        feature_names: list[str],
        sample: pd.DataFrame | np.ndarray,
        expected: np.ndarray | None = None,
    ) -> str | None:
        # Arrays are this form's own input; its self-test checks the outputs.
        self.feature_names = list(feature_names)
        return None if self._array else "per-column ONNX inputs need the request frame"
