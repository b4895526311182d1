"""The model card: everything training records beside a model and serving reads back.

Defined once here and used by both sides, so the feature schema, the drift
reference and the integrity hashes cannot drift apart between training and
serving. Stored in BentoML's model metadata under the key ``modelport``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
METADATA_KEY = "modelport"

Task = Literal["classification", "regression"]
Framework = Literal["sklearn", "keras"]
Scalar = int | float | str
ClassLabel = int | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FeatureKind = Literal["numeric", "categorical", "datetime"]
UnknownCategories = Literal["error", "ignore"]
ImputeStrategy = Literal["median", "most_frequent", "drop"]

# The numeric features a datetime input becomes, in this order, as ``<name>.<part>``.
DATE_PARTS = ("year", "month", "day", "dayofweek", "hour", "epoch_days")


class FeatureSpec(_Strict):
    """One raw input column as training saw it (what a client sends).

    The value rules (``impute``, ``kind="datetime"``) are applied by
    :func:`modelport.features.prepare_frame`, inside the model pipeline and wherever
    else raw values meet the model, so training and serving cannot disagree.
    """

    name: str
    kind: FeatureKind = Field(
        description="numeric; categorical (one-hot, text); datetime (ISO 8601 text, "
        "expanded into the numeric parts DATE_PARTS inside the model pipeline)"
    )
    dtype: str = Field(description="pandas dtype of the column at training time")
    min: float | None = Field(None, description="observed minimum (numeric only)")
    max: float | None = Field(None, description="observed maximum (numeric only)")
    categories: list[str] | None = Field(None, description="observed categories (categorical)")
    impute: Scalar | None = Field(
        None,
        description="value a missing input is replaced with (training and serving); "
        "absent: a missing value is an error",
    )
    missing: int = Field(0, description="missing values in the training data (all splits)")
    date_range: list[str] | None = Field(
        None, description="earliest and latest training value, ISO 8601 (datetime only)"
    )


class FeatureBins(_Strict):
    """Training quantile bins of one numeric feature.

    ``edges`` are the inner cut points (strictly increasing); ``len(edges) + 1``
    bins, bin *i* holding values in ``(edges[i-1], edges[i]]``.
    """

    feature: str
    edges: list[float]
    ratios: list[float] = Field(description="training share of rows per bin, sums to 1")


class DriftReference(_Strict):
    """What live traffic is compared against."""

    features: list[FeatureBins]
    class_ratios: dict[str, float] | None = Field(
        None, description="training share per class (classifiers)"
    )
    prediction_buckets: list[float] | None = Field(
        None, description="histogram bucket bounds for predicted values (regressors)"
    )


class Sample(_Strict):
    """A few training rows and what the model answered, for the readiness self-test."""

    instances: list[dict[str, Scalar]]
    predictions: list[Scalar]
    probabilities: list[list[float]] | None = None


class Integrity(_Strict):
    """SHA-256 of the training data and of every saved model file."""

    data_sha256: str
    files: dict[str, str] = Field(description="path relative to the model directory -> sha256")


class Evaluation(_Strict):
    """Held-out test metrics and the over-fitting check."""

    test: dict[str, float]
    confusion_matrix: list[list[int]] | None = None
    train_score: float
    validation_score: float
    score_name: str = Field(description="metric used for the train/validation gap")
    overfit_gap: float = Field(description="train_score - validation_score")
    overfit: bool = Field(description="gap exceeded the configured limit")
    overfit_rule: str | None = Field(None, description="the over-fitting rule, in words")
    per_class: dict[str, dict[str, float]] | None = Field(
        None,
        description="classifiers: class -> precision, recall, f1, support (test split)",
    )


class Latency(_Strict):
    """In-process latency of an artifact and of the native model as the service runs it
    (fast path on where the model allows it), measured side by side at training."""

    row_us: float = Field(description="the artifact, one row per call: median µs")
    native_row_us: float = Field(description="the native model, one row per call: median µs")
    batch_rows: int = Field(description="rows per call of the batch measurement")
    batch_ms: float = Field(description="the artifact, batch_rows rows per call: median ms")
    native_batch_ms: float = Field(description="the native model, the same batch: median ms")

    @property
    def faster(self) -> bool:
        """At least 10 % quicker than the native model for one row (what a request mostly
        is) and for the batch: closer timings are within a shared machine's noise."""
        return self.row_us < 0.9 * self.native_row_us and self.batch_ms < 0.9 * self.native_batch_ms


class Artifact(_Strict):
    """An optimised serving form of a model, measured on the test split when it was
    made: the service may use it instead of the native ``.keras`` file (Keras) or the
    pickled pipeline (scikit-learn: ``onnx``)."""

    kind: Literal["saved_model", "tflite", "onnx"] = Field(
        description="saved_model: exported TensorFlow signature (same float32 graph); "
        "tflite: TensorFlow Lite with dynamic-range quantization (int8 weights); "
        "onnx: a scikit-learn pipeline converted by skl2onnx, run by ONNX Runtime (float32)"
    )
    path: str = Field(description="file or folder inside the model directory")
    metric: str = Field(description="test metric compared: accuracy or r2")
    score: float | None = Field(None, description="the artifact's test score (absent: not made)")
    delta: float | None = Field(
        None, description="artifact score minus the original's (negative: worse)"
    )
    accepted: bool = Field(description="within the tolerance; rejected artifacts are not stored")
    reason: str
    size_bytes: int
    sample: Sample | None = Field(
        None, description="the artifact's own outputs on the card's sample, for its self-test"
    )
    latency: Latency | None = Field(
        None, description="in-process latency against the native model (onnx artifacts)"
    )


class LinearForm(_Strict):
    """A scikit-learn pipeline of scaled numeric columns into a linear model, as plain
    arrays (``modelport.predictors.linear_form``): serving computes
    ``link(((X[:, columns] - mean) / scale) @ coef.T + intercept)`` without importing
    scikit-learn or SciPy, once it reproduces the recorded sample outputs."""

    columns: list[int] = Field(description="input feature index of each model column")
    mean: list[float]
    scale: list[float]
    coef: list[list[float]] = Field(description="one row per output (1 for binary, k classes)")
    intercept: list[float]
    link: Literal["identity", "logistic", "softmax"]


class DataSummary(_Strict):
    """The training data as read: for the report and for whoever debugs a model."""

    rows: int = Field(description="rows read from the source")
    rows_used: int = Field(description="rows trained on (after dropping)")
    dropped_rows: dict[str, int] = Field(
        default_factory=dict, description="reason -> rows dropped (missing target, --impute drop)"
    )
    columns: dict[str, int] = Field(description="feature kind -> number of input columns")
    dropped_columns: list[str] = Field(default_factory=list, description="--drop columns")
    impute: ImputeStrategy = Field(description="strategy for missing feature values")
    missing: dict[str, int] = Field(
        default_factory=dict, description="feature -> missing values (before imputation)"
    )
    class_counts: dict[str, int] | None = Field(None, description="rows per class (classifiers)")
    delimiter: str | None = Field(None, description="CSV delimiter (sniffed or --sep)")
    encoding: str | None = Field(None, description="CSV encoding (sniffed or --encoding)")


class Candidate(_Strict):
    """One cross-validated configuration of a model search."""

    estimator: str
    params: dict[str, Any]
    metric: str = Field(description="cross-validation score: accuracy or r2")
    cv_mean: float
    cv_std: float
    fit_seconds: float = Field(description="mean fit time per fold")
    predict_us_per_row: float = Field(
        description="single-row predict latency (median, microseconds), as served"
    )
    chosen: bool = False


class ExplainReference(_Strict):
    """Training-split statistics that explanations start from (``modelport.explain``)."""

    means: dict[str, float] = Field(description="training mean per numeric feature")
    category_shares: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="training share of each category (categorical)"
    )
    background: list[dict[str, Scalar]] = Field(
        default_factory=list, description="seeded random training rows for sampled explainers"
    )


class Importance(_Strict):
    """Global importance: mean |attribution| per feature over the held-out test split."""

    method: str = Field(description="explainer: linear-exact, tree-shap or permutation")
    output: str = Field(description="what was explained: probability (predicted class) or value")
    rows: int = Field(description="test rows explained")
    values: dict[str, float] = Field(description="feature -> mean |attribution|")


class ModelCard(_Strict):
    """The ``modelport`` metadata entry of a model in the BentoML store."""

    schema_version: int = SCHEMA_VERSION
    framework: Framework
    task: Task
    target: str
    classes: list[ClassLabel] | None = Field(
        None, description="class labels in the order of the model's probability columns"
    )
    features: list[FeatureSpec]
    evaluation: Evaluation
    params: dict[str, Any]
    drift: DriftReference
    sample: Sample
    integrity: Integrity
    data_source: str
    rows: dict[str, int] = Field(description="rows per split: train, validation, test")
    linear: LinearForm | None = Field(
        None, description="the pipeline as arrays, when it is a linear model (absent: any other)"
    )
    artifacts: list[Artifact] = Field(
        default_factory=list,
        description="optimised serving artifacts (Keras: saved_model, tflite; scikit-learn: onnx)",
    )
    explain: ExplainReference | None = Field(
        None, description="what explanations need from the training data (absent: older models)"
    )
    importance: Importance | None = Field(None, description="global feature importance")
    # Cards written before these fields existed load with the defaults, which are
    # the behaviour those models were served with.
    unknown_categories: UnknownCategories = Field(
        "ignore",
        description="a categorical value never seen in training: error (400 naming the "
        "feature, the value and the known categories) or ignore (one-hot all zeros, "
        "counted as drift)",
    )
    data: DataSummary | None = Field(None, description="what the training data looked like")
    leaderboard: list[Candidate] | None = Field(
        None, description="cross-validated candidates when --search ran, best first"
    )
    fingerprint: str | None = Field(
        None,
        description="sha256 of the data hash and every training parameter: the same "
        "fingerprint means the same model, so no new version is made",
    )

    def artifact(self, kind: str) -> Artifact | None:
        """The accepted artifact of ``kind``, if there is one."""
        return next((a for a in self.artifacts if a.kind == kind and a.accepted), None)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_metadata(self) -> dict[str, Any]:
        # BentoML metadata refuses None: absent fields fall back to their defaults.
        return {METADATA_KEY: self.model_dump(mode="json", exclude_none=True)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ModelCard:
        try:
            raw = metadata[METADATA_KEY]
        except KeyError:
            raise ValueError("model has no modelport metadata (not trained by modelport)") from None
        return cls.model_validate(raw)


def assign_bins(edges: Sequence[float] | np.ndarray, values: np.ndarray) -> np.ndarray:
    """Bin index of each value: the one rule training and serving both use."""
    return np.searchsorted(np.asarray(edges, dtype=float), values, side="left")


def quantile_bins(feature: str, values: np.ndarray, n_bins: int) -> FeatureBins:
    """Quantile cut points of training values, merged where ties collapse them."""
    qs = np.linspace(0, 1, n_bins + 1)[1:-1]
    # Cut at observed values and never at the maximum, so ties merge bins instead of
    # leaving bins no training value falls in (an empty reference bin breaks PSI).
    cuts = np.quantile(values, qs, method="inverted_cdf")
    edges = np.unique(cuts[cuts < values.max()])
    counts = np.bincount(assign_bins(edges, values), minlength=len(edges) + 1)
    ratios = counts / counts.sum()
    return FeatureBins(
        feature=feature,
        edges=[float(e) for e in edges],
        ratios=[round(float(r), 6) for r in ratios],
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_model_files(root: Path, exclude: Iterable[str] = ("model.yaml",)) -> dict[str, str]:
    """SHA-256 of every file below a model directory, except BentoML's own metadata
    file (which holds these very hashes)."""
    skip = set(exclude)
    return {
        str(p.relative_to(root)): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and str(p.relative_to(root)) not in skip
    }


def verify_model_files(root: Path, expected: dict[str, str]) -> list[str]:
    """Problems found comparing files on disk with the recorded hashes (empty if none)."""
    actual = hash_model_files(root)
    problems = [f"{name}: missing" for name in expected if name not in actual]
    problems += [
        f"{name}: sha256 mismatch" for name, h in expected.items() if actual.get(name, h) != h
    ]
    problems += [f"{name}: not recorded" for name in actual if name not in expected]
    return problems
