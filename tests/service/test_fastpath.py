"""The serving fast path gives exactly what the slow, general path gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from modelport.metadata import (
    DriftReference,
    Evaluation,
    FeatureSpec,
    Integrity,
    ModelCard,
    Sample,
    assign_bins,
    quantile_bins,
)
from modelport.predictors import SklearnPredictor, compile_columns
from service.validation import InputError, Schema, parse_instances

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def _card(frame: pd.DataFrame, names: list[str], categorical: tuple[str, ...] = ()) -> ModelCard:
    features = [
        FeatureSpec(name=n, kind="categorical", dtype="object", categories=["a", "b"])
        if n in categorical
        else FeatureSpec(
            name=n,
            kind="numeric",
            dtype="float64",
            min=float(frame[n].min()),
            max=float(frame[n].max()),
        )
        for n in names
    ]
    bins = [
        quantile_bins(n, frame[n].to_numpy(dtype=float), 10) for n in names if n not in categorical
    ]
    return ModelCard(
        framework="sklearn",
        task="classification",
        target="target",
        classes=[0, 1],
        features=features,
        evaluation=Evaluation(
            test={"accuracy": 1.0},
            train_score=1,
            validation_score=1,
            score_name="accuracy",
            overfit_gap=0,
            overfit=False,
        ),
        params={},
        drift=DriftReference(features=bins),
        sample=Sample(instances=[], predictions=[]),
        integrity=Integrity(data_sha256="0" * 64, files={}),
        data_source="test",
        rows={"train": 1, "validation": 1, "test": 1},
    )


def _rows(frame: pd.DataFrame, names: list[str], n: int) -> list[dict]:
    return [{k: float(v) for k, v in r.items()} for r in frame[names].head(n).to_dict("records")]


def test_fast_parse_equals_careful_parse(cancer) -> None:
    names = [c for c in cancer.columns if c != "target"]
    schema = Schema(_card(cancer, names))
    rows = _rows(cancer, names, 50)
    rows[3]["mean area"] = 700  # ints are numbers too
    batch = parse_instances(rows, schema, 100)
    assert batch.frame is None and batch.numeric.dtype == np.float64
    expected = np.array([[float(r[n]) for n in names] for r in rows])
    assert np.array_equal(batch.numeric, expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "expected a number, got a boolean"),
        ("1.5", "expected a number, got a string '1.5'"),
        (None, "missing value (null)"),
        (float("nan"), "must be a finite number"),
        (10**400, "must be a finite number"),
    ],
)
def test_fast_parse_falls_back_to_the_precise_message(cancer, value, message) -> None:
    names = [c for c in cancer.columns if c != "target"]
    schema = Schema(_card(cancer, names))
    rows = _rows(cancer, names, 3)
    rows[2]["worst area"] = value
    with pytest.raises(InputError, match=r"instances\[2\]\.worst area") as err:
        parse_instances(rows, schema, 10)
    assert message in err.value.message


def test_mixed_schema_builds_a_frame_and_numeric_block(cancer) -> None:
    frame = cancer.assign(colour=["a", "b"] * (len(cancer) // 2) + ["a"] * (len(cancer) % 2))
    names = ["mean radius", "colour", "mean area"]
    schema = Schema(_card(frame, names, categorical=("colour",)))
    rows = [
        {"mean radius": 1.0, "colour": "a", "mean area": 2.0},
        {"mean radius": 3.0, "colour": "z", "mean area": 4.0},
    ]
    batch = parse_instances(rows, schema, 10)
    assert batch.frame is not None and list(batch.frame.columns) == names
    assert batch.numeric.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_vectorised_drift_bins_match_the_training_rule(cancer) -> None:
    from service.monitoring import ModelMetrics, families

    names = [c for c in cancer.columns if c != "target"]
    card = _card(cancer, names)
    metrics = ModelMetrics(families([]), "m", "v", card, monitored=30)
    refs = card.drift.features
    rng = np.random.default_rng(0)
    values = cancer[names].to_numpy(dtype=float)
    # Real rows, rows exactly on the bin edges, and values beyond the training range.
    edges_rows = np.array(
        [[r.edges[i % len(r.edges)] if r.edges else 0.0 for r in refs] for i in range(12)]
    )
    wide = values[:40] * rng.uniform(0.2, 3.0, size=(40, len(names)))
    X = np.vstack([values, edges_rows, wide])
    counts, outside = metrics.drift_counts(X)
    for j, r in enumerate(refs):
        expected = np.bincount(assign_bins(r.edges, X[:, j]), minlength=len(r.ratios))
        assert counts[j, : len(r.ratios)].tolist() == expected.tolist(), r.feature
        assert counts[j, len(r.ratios) :].sum() == 0
        lo, hi = card.features[j].min, card.features[j].max
        assert outside[j] == np.count_nonzero((X[:, j] < lo) | (X[:, j] > hi))
    # Rows observed one request at a time wait, and one flush counts exactly what
    # binning them together does.
    from service.validation import Batch

    metrics.deferred = True
    before = [child._value.get() for child in metrics._bins if child is not None]
    out_before = [child._value.get() for child in metrics._outside]
    for row in X:
        metrics.observe_inputs(Batch(numeric=row[None, :]))
    assert metrics._waiting_rows == len(X)
    metrics.flush()
    after = [child._value.get() for child in metrics._bins if child is not None]
    added = np.subtract(after, before).tolist()
    assert added == [int(n) for j, r in enumerate(refs) for n in counts[j, : len(r.ratios)]]
    assert np.subtract([c._value.get() for c in metrics._outside], out_before).tolist() == (
        outside.tolist()
    )
    assert metrics._waiting == [] and metrics._waiting_rows == 0


def _fit(cancer: pd.DataFrame, ct: ColumnTransformer, head) -> tuple[Pipeline, pd.DataFrame]:
    names = [c for c in cancer.columns if c != "target"]
    pipe = Pipeline([("pre", ct), ("model", head)]).fit(cancer[names], cancer["target"])
    return pipe, cancer[names]


@pytest.mark.parametrize("layout", ["standard", "mixed"])
def test_compiled_pipeline_reproduces_the_original(cancer, layout) -> None:
    names = [c for c in cancer.columns if c != "target"]
    if layout == "standard":
        ct = ColumnTransformer([("n", StandardScaler(), names)])
    else:  # several transformers, passthrough and a dropped remainder, columns reordered
        ct = ColumnTransformer(
            [
                ("s", StandardScaler(), names[10:20]),
                ("m", MinMaxScaler(), names[:10][::-1]),
                ("p", "passthrough", [names[25]]),
            ]
        )
    pipe, X = _fit(cancer, ct, LogisticRegression(max_iter=5000))
    predictor = SklearnPredictor(pipe, "classification", [0, 1])
    assert predictor.enable_fast_path(names, X.head(5)) is None
    arr = X.to_numpy(dtype=float)
    assert np.allclose(predictor.scores(arr), pipe.predict_proba(X), rtol=1e-12, atol=1e-15)
    assert predictor.predict(arr).predictions == predictor.predict(X).predictions


def test_unsupported_layout_keeps_the_original_path(cancer) -> None:
    names = [c for c in cancer.columns if c != "target"]
    pipe = Pipeline([("s", StandardScaler()), ("m", LinearRegression())])
    pipe.fit(cancer[names], cancer["target"])
    predictor = SklearnPredictor(pipe, "regression", None)
    assert predictor.enable_fast_path(names, cancer[names].head(5)) == "column layout not supported"
    arr = cancer[names].to_numpy(dtype=float)
    assert np.allclose(predictor.scores(arr), pipe.predict(cancer[names]))  # via a frame


def test_fast_path_that_cannot_reproduce_is_refused(cancer) -> None:
    from sklearn.preprocessing import FunctionTransformer

    names = [c for c in cancer.columns if c != "target"]
    # Works on DataFrames only (looks columns up by name): the array path fails.
    by_name = FunctionTransformer(lambda df: df[["mean radius"]] * 2.0)
    pipe, X = _fit(cancer, ColumnTransformer([("f", by_name, names)]), LinearRegression())
    predictor = SklearnPredictor(pipe, "regression", None)
    why = predictor.enable_fast_path(names, X.head(5))
    assert why is not None and why.startswith("fast path failed")
    arr = X.to_numpy(dtype=float)
    assert np.allclose(predictor.scores(arr), pipe.predict(X))


def test_compile_refuses_sparse_output(cancer) -> None:
    from sklearn.preprocessing import OneHotEncoder

    names = ["mean radius"]
    ct = ColumnTransformer([("o", OneHotEncoder(), names)], sparse_threshold=1.0)
    ct.fit(cancer[names].round())
    assert ct.sparse_output_ and compile_columns(ct, names) is None


def test_fast_path_checked_against_recorded_outputs(cancer) -> None:
    names = [c for c in cancer.columns if c != "target"]
    ct = ColumnTransformer([("n", StandardScaler(), names)])
    pipe, X = _fit(cancer, ct, LogisticRegression(max_iter=5000))
    sample = X.head(5).to_numpy(dtype=float)
    recorded = pipe.predict_proba(X.head(5)).round(8)  # as training stores them
    predictor = SklearnPredictor(pipe, "classification", [0, 1])
    assert predictor.enable_fast_path(names, sample, recorded) is None
    other = SklearnPredictor(pipe, "classification", [0, 1])
    assert (
        other.enable_fast_path(names, sample, recorded[:, ::-1])
        == "fast path does not reproduce the model's output"
    )
    with pytest.raises(ValueError, match="expected scores"):
        other.enable_fast_path(names, sample)


@pytest.mark.unit
def test_pending_series_flush_to_what_direct_observation_gives() -> None:
    """Summed in memory then flushed, a histogram and a counter hold exactly what
    observing them one by one gives."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from service.monitoring import PendingCounter, PendingHistogram

    registry = CollectorRegistry()
    buckets = (0.001, 0.01, 0.1, 1.0)
    direct = Histogram("direct", "d", ["m"], buckets=buckets, registry=registry).labels("x")
    summed = Histogram("summed", "s", ["m"], buckets=buckets, registry=registry).labels("x")
    c_direct = Counter("c_direct", "d", registry=registry)
    c_summed = Counter("c_summed", "s", registry=registry)
    pending, pending_c = PendingHistogram(summed), PendingCounter(c_summed)
    values = [0.0005, 0.001, 0.0011, 0.05, 0.1, 0.7, 1.0, 3.0, 0.01, 0.0]
    for v in values:
        direct.observe(v)
        pending.observe(v)
        c_direct.inc()
        pending_c.inc()
    assert registry.get_sample_value("summed_count", {"m": "x"}) == 0  # nothing before a flush
    pending.flush()
    pending_c.flush()
    pending.flush()  # a second flush adds nothing
    for le in ("0.001", "0.01", "0.1", "1.0", "+Inf"):
        assert registry.get_sample_value("summed_bucket", {"m": "x", "le": le}) == (
            registry.get_sample_value("direct_bucket", {"m": "x", "le": le})
        )
    assert registry.get_sample_value("summed_sum", {"m": "x"}) == pytest.approx(sum(values))
    assert registry.get_sample_value("c_summed_total") == len(values)


def test_waiting_rows_are_bounded_without_a_flush(cancer) -> None:
    """If flushes lag, the request that fills the queue bins it: memory stays bounded
    and no row is lost."""
    from service.monitoring import ModelMetrics, families
    from service.validation import Batch

    names = [c for c in cancer.columns if c != "target"]
    metrics = ModelMetrics(families([]), "m", "v", _card(cancer, names), monitored=30)
    metrics.deferred = True
    metrics.MAX_WAITING = 10
    values = cancer[names].to_numpy(dtype=float)[:25]
    binned = lambda: sum(c._value.get() for c in metrics._bins if c is not None)  # noqa: E731
    start = binned()
    for row in values:
        metrics.observe_inputs(Batch(numeric=row[None, :]))
        assert metrics._waiting_rows < 10
    monitored = len(metrics._columns)
    assert binned() - start == 20 * monitored  # two queues of ten, binned by requests
    metrics.flush()
    assert binned() - start == 25 * monitored


def test_a_flush_bins_in_slices_and_yields_between_them(cancer) -> None:
    """The Flusher's flush gives the serving thread the GIL between slices of the
    binning (no multi-millisecond stall); the counts are those of one binning."""
    from service.monitoring import ModelMetrics, families
    from service.validation import Batch

    names = [c for c in cancer.columns if c != "target"]
    metrics = ModelMetrics(families([]), "m", "v", _card(cancer, names), monitored=30)
    metrics.deferred = True
    values = np.vstack([cancer[names].to_numpy(dtype=float)] * 3)[:1300]
    binned = lambda: [c._value.get() for c in metrics._bins if c is not None]  # noqa: E731
    before = binned()
    for row in values:
        metrics.observe_inputs(Batch(numeric=row[None, :]))
    metrics.observe_inputs(Batch(numeric=values[:700]))  # one request of 700 rows
    pauses = []
    metrics.flush(pause=lambda: pauses.append(1))
    assert len(pauses) >= 3  # 2 000 rows in slices of 512, and the counter updates
    counts, _ = metrics.drift_counts(np.vstack([values, values[:700]]))
    widths = [len(r.ratios) for r in metrics.card.drift.features][: len(metrics._columns)]
    expected = [int(n) for j, w in enumerate(widths) for n in counts[j, :w]]
    assert np.subtract(binned(), before).tolist() == expected
