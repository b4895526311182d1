"""Configuration, read from ``MODELPORT_*`` environment variables (or a ``.env`` file).

Every field is documented: ``modelport config`` prints them with their current values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MODELPORT_"


class TrainingSettings(BaseSettings):
    """How models are split, fitted, evaluated and admitted to the store."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    seed: int = Field(42, description="Random seed for splits and model initialisation.")
    test_size: float = Field(0.2, gt=0, lt=0.5, description="Share of rows held out for testing.")
    validation_size: float = Field(
        0.2, gt=0, lt=0.5, description="Share of the remaining rows used for validation."
    )
    min_rows: int = Field(
        30, ge=10, description="Fewest rows a data set may have to be split and trained on."
    )
    max_categories: int = Field(
        50,
        ge=2,
        description="Text columns with more distinct values than this cannot be one-hot encoded.",
    )
    overfit_gap: float = Field(
        0.05,
        ge=0,
        description="Over-fitting: smallest train minus validation accuracy that can flag a "
        "classifier (it must also exceed MODELPORT_OVERFIT_RELATIVE_GAP).",
    )
    overfit_gap_r2: float = Field(
        0.10,
        ge=0,
        description="Over-fitting: smallest train minus validation R² that can flag a "
        "regressor (small validation splits make R² noisy).",
    )
    overfit_relative_gap: float = Field(
        0.10,
        ge=0,
        description="Over-fitting: the gap must also exceed this share of the train score.",
    )
    impute: Literal["median", "most_frequent", "drop"] = Field(
        "median",
        description="Missing feature values: median (most frequent value for text, median "
        "date for dates), most_frequent, or drop the rows. Recorded in the model card.",
    )
    unknown_categories: Literal["error", "ignore"] = Field(
        "error",
        description="A category never seen in training, at serving: error (400 naming the "
        "feature, value and known categories) or ignore (counted as drift). Per model.",
    )
    search_budget: str = Field(
        "120s", description="Time budget of `modelport train --search` (e.g. 90s, 5m)."
    )
    gate_min_metrics: dict[str, float] = Field(
        default_factory=lambda: {"accuracy": 0.7, "roc_auc": 0.7, "r2": 0.1},
        description="Quality gate: minimum held-out test metrics (those the task has) "
        "for a model to be registered. JSON, e.g. '{\"accuracy\": 0.9}'.",
    )
    gate_tolerance: float = Field(
        0.01,
        ge=0,
        description="Quality gate: how much worse than the production model (accuracy for "
        "classifiers, R² for regressors, on the same test split) a new model may be.",
    )
    drift_bins: int = Field(
        10, ge=2, le=20, description="Quantile bins per numeric feature in the drift reference."
    )
    sample_rows: int = Field(
        5, ge=1, le=100, description="Training rows kept with the model for its self-test."
    )
    keras_epochs: int = Field(300, ge=1, description="Most epochs a Keras model trains for.")
    keras_patience: int = Field(
        20, ge=1, description="Epochs without validation-loss improvement before stopping."
    )
    keras_batch_size: int = Field(32, ge=1, description="Keras mini-batch size.")
    artifact_tolerance: float = Field(
        0.01,
        ge=0,
        description="Most test accuracy (R² for regressors) an optimised serving "
        "artifact (Keras: SavedModel, quantized TFLite; scikit-learn: ONNX) may lose "
        "against the original; worse ones are refused.",
    )
    reports_dir: Path = Field(
        Path("reports"), description="Where training reports are written (one folder a model)."
    )


class ServiceSettings(BaseSettings):
    """How the service selects, checks and serves models."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    models: str = Field(
        "breast-cancer,diabetes,breast-cancer-keras",
        description="Comma-separated model tags to serve: 'name' (its production version, "
        "else the latest) or 'name:version'.",
    )
    max_batch_rows: int = Field(
        10_000, ge=1, description="Most instances one request may carry; more gets HTTP 413."
    )
    max_body_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest request body accepted; more gets HTTP 413."
    )
    monitored_features: int = Field(
        30,
        ge=0,
        description="Most numeric features per model that get drift-bin series "
        "(bounds label cardinality; the first N in schema order).",
    )
    monitoring: bool = Field(
        True,
        description="Record the per-request model series (input drift bins, predictions, "
        "latency and batch-size histograms). Request counts and model info stay on; "
        "turn this off only to measure what monitoring costs.",
    )
    drift_flush_seconds: float = Field(
        0.5,
        ge=0,
        description="Rows wait to be binned into drift counts, and the other per-request "
        "series (request counts, classes, latency, batch size, values) are summed in memory, "
        "and both reach their Prometheus series this often (0: on every request). They lag "
        "by at most this much in the workers that do not answer a scrape (the one that "
        "answers flushes first); the remainder is flushed at shutdown.",
    )
    keras_artifact: Literal["auto", "keras", "saved_model", "tflite"] = Field(
        "auto",
        description="Serving form of Keras models: 'auto' takes the fastest one training "
        "accepted (tflite, then saved_model, then the native .keras file).",
    )
    sklearn_artifact: Literal["auto", "native", "onnx"] = Field(
        "auto",
        description="Serving form of scikit-learn models: 'auto' takes the ONNX Runtime "
        "form when training accepted it and measured it faster than the native model, "
        "else the native one; 'onnx' insists (a model without an accepted one stays "
        "unready, with the reason).",
    )
    selftest_tolerance: float = Field(
        1e-4,
        ge=0,
        description="Largest difference between a stored sample output and the live one "
        "for the readiness self-test to pass.",
    )

    verify_key: Path | None = Field(
        None,
        description="Public key (PEM, elliptic curve) that every served model's signature "
        "(OpenSSF model-signing, over its files and card) must verify with; a model that is "
        "unsigned or fails keeps the service unready. Unset: signatures are not enforced.",
    )
    variant: Literal["stable", "canary", "shadow"] = Field(
        "stable",
        description="This pod's role in a release, the 'variant' label of every modelport_* "
        "series (the chart sets it per Deployment), so a canary is judged against stable.",
    )
    explain: bool = Field(
        True,
        description="Serve explanations (POST /explain, OIP parameters.explain). Explainers "
        "are built on a worker's first explanation request, never at start.",
    )
    explain_budget_seconds: float = Field(
        5.0,
        gt=0,
        description="Most time one request's sampled explanation (models without an exact "
        "method, e.g. Keras) may take; past it the request gets 503 with the reason.",
    )
    explain_max_rows: int = Field(
        16,
        ge=1,
        description="Most rows one request may ask a sampled explanation for (exact methods "
        "take up to MODELPORT_MAX_BATCH_ROWS); more gets HTTP 413.",
    )
    shadow_url: str = Field(
        "",
        description="Base URL of the canary Service (e.g. http://modelport-canary:3000) that "
        "stable pods mirror a sample of /predict and V2 infer requests to, after answering, "
        "to compare predictions. Empty: no mirroring.",
    )
    shadow_fraction: float = Field(
        0.1, ge=0, le=1, description="Share of requests mirrored when MODELPORT_SHADOW_URL is set."
    )
    shadow_queue: int = Field(
        4096,
        ge=1,
        description="Mirrored requests waiting to be sent (every 50 ms, batched); when full, "
        "new ones are dropped (and counted) rather than slowing the stable response.",
    )
    shadow_tolerance: float = Field(
        0.01,
        ge=0,
        description="Regressors: a mirrored prediction agrees when |stable - canary| is at "
        "most this.",
    )

    def model_tags(self) -> list[str]:
        return [t.strip() for t in self.models.split(",") if t.strip()]
