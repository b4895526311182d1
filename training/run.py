"""Training end to end: split, fit, evaluate, gate, report, register."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from sklearn.model_selection import train_test_split

from modelport.metadata import (
    DriftReference,
    Evaluation,
    Framework,
    Integrity,
    ModelCard,
    Sample,
    hash_model_files,
    quantile_bins,
)
from modelport.predictors import (
    KERAS_FILE,
    PREPROCESSOR_FILE,
    KerasPredictor,
    Predictor,
    SklearnPredictor,
)
from modelport.settings import TrainingSettings
from training import estimators, evaluate, optimize
from training.data import Dataset, feature_specs
from training.gate import GateResult, check_minimums, compare_with_production
from training.report import write_report


class GateError(RuntimeError):
    """The model did not pass the quality gate and was not registered."""


@dataclass
class Splits:
    X_train: pd.DataFrame
    X_val: pd.DataFrame
    X_test: pd.DataFrame
    y_train: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray


@dataclass
class TrainResult:
    tag: str
    card: ModelCard
    report: Path
    gate: GateResult
    registered: bool
    notes: list[str] = field(default_factory=list)


def split(data: Dataset, settings: TrainingSettings) -> Splits:
    y = data.y.to_numpy()
    strat = y if data.task == "classification" else None
    X_rest, X_test, y_rest, y_test = train_test_split(
        data.X, y, test_size=settings.test_size, random_state=settings.seed, stratify=strat
    )
    strat = y_rest if data.task == "classification" else None
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest,
        y_rest,
        test_size=settings.validation_size,
        random_state=settings.seed,
        stratify=strat,
    )
    return Splits(X_train, X_val, X_test, y_train, y_val, y_test)


def _classes(y: pd.Series) -> list[Any]:
    return [v.item() if hasattr(v, "item") else v for v in sorted(y.unique().tolist())]


def _fit(
    framework: Framework,
    data: Dataset,
    s: Splits,
    classes: list[Any] | None,
    settings: TrainingSettings,
    console: Console,
) -> tuple[Predictor, dict[str, Any], dict[str, list[float]] | None]:
    features = feature_specs(data.X)
    if framework == "sklearn":
        pipeline, params = estimators.build_sklearn(data.task, features, settings.seed)
        # Classes are fitted as indexes into `classes`, so probability columns line up.
        y_fit = s.y_train if classes is None else np.searchsorted(classes, s.y_train)
        with console.status("fitting scikit-learn pipeline"):
            pipeline.fit(s.X_train, y_fit)
        return SklearnPredictor(pipeline, data.task, classes), params, None

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    pre = estimators.build_preprocessor(features)
    x_train = np.asarray(pre.fit_transform(s.X_train), dtype=np.float32)
    x_val = np.asarray(pre.transform(s.X_val), dtype=np.float32)
    if classes is None:
        y_train, y_val = s.y_train.astype(np.float32), s.y_val.astype(np.float32)
    else:
        y_train = np.searchsorted(classes, s.y_train).astype(np.float32)
        y_val = np.searchsorted(classes, s.y_val).astype(np.float32)
    model, params = estimators.build_keras(
        x_train.shape[1], data.task, len(classes or []), settings.seed
    )
    params.update(
        epochs_max=settings.keras_epochs,
        patience=settings.keras_patience,
        batch_size=settings.keras_batch_size,
    )
    with Progress(
        TextColumn("[bold]keras[/] epoch"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("{task.fields[losses]}"),
        console=console,
        transient=False,
    ) as progress:
        task_id = progress.add_task("fit", total=settings.keras_epochs, losses="")

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            losses = f"loss {logs.get('loss', 0):.4f}  val_loss {logs.get('val_loss', 0):.4f}"
            progress.update(task_id, completed=epoch, losses=losses)

        history = estimators.fit_keras(
            model,
            x_train,
            y_train,
            x_val,
            y_val,
            epochs=settings.keras_epochs,
            patience=settings.keras_patience,
            batch_size=settings.keras_batch_size,
            on_epoch=on_epoch,
        )
    params["epochs_run"] = len(history.get("loss", []))
    return KerasPredictor(pre, model, data.task, classes), params, history


def _drift_reference(
    data: Dataset, s: Splits, classes: list[Any] | None, settings: TrainingSettings
) -> DriftReference:
    bins = [
        quantile_bins(str(name), s.X_train[name].to_numpy(dtype=float), settings.drift_bins)
        for name in s.X_train.columns
        if pd.api.types.is_numeric_dtype(s.X_train[name])
    ]
    if classes is not None:
        shares = pd.Series(s.y_train).value_counts(normalize=True)
        return DriftReference(
            features=bins,
            class_ratios={str(c): round(float(shares.get(c, 0.0)), 6) for c in classes},
        )
    qs = np.unique(np.quantile(s.y_train.astype(float), np.linspace(0, 1, 11)))
    return DriftReference(features=bins, prediction_buckets=[float(q) for q in qs])


def _sample(predictor: Predictor, X: pd.DataFrame, n: int) -> Sample:
    rows = X.head(n)
    out = predictor.predict(rows)
    instances = [
        {str(k): (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
        for rec in rows.to_dict(orient="records")
    ]
    proba = None if out.probabilities is None else out.probabilities.round(8).tolist()
    return Sample(instances=instances, predictions=out.predictions, probabilities=proba)


def _gate(
    name: str, card: ModelCard, predictor: Predictor, s: Splits, settings: TrainingSettings
) -> GateResult:
    from modelport import store

    result = GateResult(failures=check_minimums(card.evaluation.test, settings.gate_min_metrics))
    prod = store.production_model(name)
    if prod is None:
        result.notes.append(f"no production version of {name!r} to compare with")
        return result
    prod_card = store.card_of(prod)
    if prod_card.feature_names != card.feature_names or prod_card.task != card.task:
        result.failures.append(
            f"production {prod.tag} has a different task or feature schema; "
            f"it cannot be compared on the same test split"
        )
        return result
    metric, ours = evaluate.headline_score(card.task, s.y_test, predictor.predict(s.X_test))
    prod_out = store.predictor_of(prod, prod_card).predict(s.X_test)
    _, theirs = evaluate.headline_score(card.task, s.y_test, prod_out)
    failure = compare_with_production(metric, ours, theirs, settings.gate_tolerance, str(prod.tag))
    if failure:
        result.failures.append(failure)
    else:
        result.notes.append(
            f"test {metric} {ours:.4f} vs production {prod.tag} {theirs:.4f} (same split)"
        )
    return result


def _with_hashes(card: ModelCard, model_dir: Path) -> ModelCard:
    files = hash_model_files(model_dir)
    return card.model_copy(update={"integrity": card.integrity.model_copy(update={"files": files})})


def _register(
    tag: str,
    card: ModelCard,
    predictor: Predictor,
    labels: dict[str, str],
    artifacts_dir: Path | None = None,
) -> None:
    """Save into the store with the integrity hashes; nothing is left behind on failure."""
    import bentoml
    import joblib

    from modelport.store import write_info

    if isinstance(predictor, SklearnPredictor):
        bentoml.sklearn.save_model(
            tag, predictor.estimator, labels=labels, metadata=card.to_metadata()
        )
        try:
            model = bentoml.models.get(tag)  # the stored copy, not the temporary one
            model.info.metadata.update(_with_hashes(card, Path(model.path)).to_metadata())
            write_info(model)
        except BaseException:
            bentoml.models.delete(tag)
            raise
        return
    assert isinstance(predictor, KerasPredictor)
    with bentoml.models.create(tag, labels=labels, metadata=card.to_metadata()) as model:
        root = Path(model.path)
        predictor.model.save(root / KERAS_FILE)
        joblib.dump(predictor.preprocessor, root / PREPROCESSOR_FILE)
        for artifact in card.artifacts:
            if artifact.accepted and artifacts_dir is not None:
                src = artifacts_dir / artifact.path
                copy = shutil.copytree if src.is_dir() else shutil.copy2
                copy(src, root / artifact.path)
        model.info.metadata.update(_with_hashes(card, root).to_metadata())


def train(
    data: Dataset,
    *,
    name: str,
    framework: Framework,
    settings: TrainingSettings,
    console: Console,
    force: bool = False,
    stage: str = "staging",
) -> TrainResult:
    import bentoml

    tag = str(bentoml.Tag(name, None).make_new_version())
    s = split(data, settings)
    classes = _classes(data.y) if data.task == "classification" else None
    console.print(
        f"[bold]{tag}[/]: {framework} {data.task}, rows train/validation/test "
        f"{len(s.X_train)}/{len(s.X_val)}/{len(s.X_test)}"
    )
    predictor, params, history = _fit(framework, data, s, classes, settings, console)
    workdir = Path(tempfile.mkdtemp(prefix="modelport-artifacts-"))
    try:
        return _finish(
            tag,
            name,
            framework,
            data,
            s,
            classes,
            predictor,
            params,
            history,
            settings,
            console,
            force,
            stage,
            workdir,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _finish(
    tag: str,
    name: str,
    framework: Framework,
    data: Dataset,
    s: Splits,
    classes: list[Any] | None,
    predictor: Predictor,
    params: dict[str, Any],
    history: Any,
    settings: TrainingSettings,
    console: Console,
    force: bool,
    stage: str,
    workdir: Path,
) -> TrainResult:
    artifacts = []
    if isinstance(predictor, KerasPredictor):
        artifacts = optimize.keras_artifacts(
            predictor,
            s.X_test,
            s.y_test,
            settings.artifact_tolerance,
            workdir,
            lambda p: _sample(p, s.X_test, settings.sample_rows),
            console,
        )

    test_out = predictor.predict(s.X_test)
    if data.task == "classification":
        assert classes is not None
        test = evaluate.classification_metrics(s.y_test, test_out, classes)
        confusion = test.pop("confusion_matrix")
    else:
        test, confusion = evaluate.regression_metrics(s.y_test, test_out), None
    score_name, train_score = evaluate.headline_score(
        data.task, s.y_train, predictor.predict(s.X_train)
    )
    _, val_score = evaluate.headline_score(data.task, s.y_val, predictor.predict(s.X_val))
    gap = train_score - val_score
    card = ModelCard(
        framework=framework,
        task=data.task,
        target=data.target,
        classes=classes,
        features=feature_specs(data.X),
        evaluation=Evaluation(
            test=test,
            confusion_matrix=confusion,
            train_score=train_score,
            validation_score=val_score,
            score_name=score_name,
            overfit_gap=gap,
            overfit=gap > settings.overfit_gap,
        ),
        params={
            **params,
            "seed": settings.seed,
            "test_size": settings.test_size,
            "validation_size": settings.validation_size,
        },
        drift=_drift_reference(data, s, classes, settings),
        sample=_sample(predictor, s.X_test, settings.sample_rows),
        integrity=Integrity(data_sha256=data.sha256, files={}),
        data_source=data.source,
        rows={"train": len(s.X_train), "validation": len(s.X_val), "test": len(s.X_test)},
        artifacts=artifacts,
    )
    gate = _gate(name, card, predictor, s, settings)
    gate_lines = [f"FAILED: {f}" for f in gate.failures] + gate.notes
    if gate.passed:
        gate_lines.insert(0, "passed")
    elif force:
        gate_lines.insert(0, "failed, registered anyway with --force")

    registered = gate.passed or force
    # A rejected model's report still shows why, but goes to a scratch folder so the
    # reports tree only lists registered versions.
    report_dir = (
        settings.reports_dir / name / tag.split(":", 1)[1]
        if registered
        else Path(tempfile.mkdtemp(prefix=f"modelport-rejected-{name}-"))
    )
    report = write_report(
        report_dir,
        tag,
        card,
        s.y_test,
        test_out.predictions,
        test_out.probabilities,
        history,
        gate_lines,
    )
    if registered:
        labels = {
            "framework": framework,
            "task": data.task,
            "stage": stage,
            "trained-by": "modelport",
        }
        _register(tag, card, predictor, labels, workdir)
    return TrainResult(tag, card, report, gate, registered=registered)
