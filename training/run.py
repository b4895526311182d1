"""Training end to end: split, fit, evaluate, gate, report, register."""

from __future__ import annotations

import hashlib
import json
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
    Candidate,
    DataSummary,
    DriftReference,
    Evaluation,
    Framework,
    Integrity,
    ModelCard,
    Sample,
    UnknownCategories,
    hash_model_files,
    quantile_bins,
)
from modelport.predictors import (
    KERAS_FILE,
    PREPROCESSOR_FILE,
    KerasPredictor,
    Predictor,
    SklearnPredictor,
    linear_form,
)
from modelport.settings import TrainingSettings
from training import estimators, evaluate, optimize
from training.data import Dataset, feature_specs
from training.gate import GateResult, check_minimums, compare_with_production
from training.report import write_report
from training.search import ORDER, run_search


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
    existing: bool = False  # same data and parameters as an existing version: nothing trained


@dataclass(frozen=True)
class Choice:
    """What to fit: one estimator family with overrides, or a search."""

    estimator: str | None = None  # a family name (estimators.NAMES); None: the default
    params: dict[str, Any] = field(default_factory=dict)
    search: bool = False
    budget_s: float = 120.0
    unknown_categories: UnknownCategories = "error"


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


def _features_of(pipeline: Any, fallback: list[Any]) -> list[Any]:
    # The fitted raw-value step holds the imputation values the card records.
    raw = dict(getattr(pipeline, "steps", [])).get("raw")
    return list(raw.specs_) if raw is not None else fallback


def _fit(
    framework: Framework,
    data: Dataset,
    s: Splits,
    classes: list[Any] | None,
    settings: TrainingSettings,
    console: Console,
    choice: Choice,
) -> tuple[Predictor, dict[str, Any], dict[str, list[float]] | None, list[Any], list[Candidate]]:
    """The fitted predictor, its parameters, the Keras history, the card's features
    and the search leaderboard (empty without --search)."""
    from sklearn.pipeline import Pipeline

    features = feature_specs(data.X)
    # Classes are fitted as indexes into `classes`, so probability columns line up.
    y_fit = s.y_train if classes is None else np.searchsorted(classes, s.y_train)
    if framework == "sklearn":
        board: list[Candidate] = []
        family, overrides = choice.estimator or "linear", dict(choice.params)
        if choice.search:
            families = [choice.estimator] if choice.estimator else list(ORDER)
            board, notes = run_search(
                data.task,
                features,
                s.X_train,
                s.y_train,
                classes,
                families=families,
                budget_s=choice.budget_s,
                seed=settings.seed,
                impute=data.impute,
                console=console,
            )
            for note in notes:
                console.print(note)
            family, overrides = board[0].estimator, dict(board[0].params)
        pipeline, params = estimators.build_sklearn(
            data.task, features, settings.seed, family, overrides, data.impute
        )
        with console.status(f"fitting {family}"):
            pipeline.fit(s.X_train, y_fit)
        if choice.search:
            params["search"] = {"budget_s": choice.budget_s, "folds": 5}
        predictor = SklearnPredictor(pipeline, data.task, classes)
        return predictor, params, None, _features_of(pipeline, features), board

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    keras_opts = estimators.keras_settings(choice.params)
    epochs = keras_opts["epochs"] or settings.keras_epochs
    patience = keras_opts["patience"] or settings.keras_patience
    batch_size = keras_opts["batch_size"] or settings.keras_batch_size
    steps = estimators.build_input(features, data.impute)
    pre: Any = steps[0][1] if len(steps) == 1 else Pipeline(steps)
    x_train = np.asarray(pre.fit_transform(s.X_train), dtype=np.float32)
    x_val = np.asarray(pre.transform(s.X_val), dtype=np.float32)
    if classes is None:
        y_train, y_val = s.y_train.astype(np.float32), s.y_val.astype(np.float32)
    else:
        y_train = np.searchsorted(classes, s.y_train).astype(np.float32)
        y_val = np.searchsorted(classes, s.y_val).astype(np.float32)
    model, params = estimators.build_keras(
        x_train.shape[1],
        data.task,
        len(classes or []),
        settings.seed,
        layers=keras_opts["layers"],
        learning_rate=keras_opts["learning_rate"],
    )
    params.update(
        epochs_max=epochs,
        patience=patience,
        batch_size=batch_size,
        overrides=estimators.card_params(choice.params),
    )
    with Progress(
        TextColumn("[bold]keras[/] epoch"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("{task.fields[losses]}"),
        console=console,
        transient=False,
    ) as progress:
        task_id = progress.add_task("fit", total=epochs, losses="")

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            losses = f"loss {logs.get('loss', 0):.4f}  val_loss {logs.get('val_loss', 0):.4f}"
            progress.update(task_id, completed=epoch, losses=losses)

        history = estimators.fit_keras(
            model,
            x_train,
            y_train,
            x_val,
            y_val,
            epochs=epochs,
            patience=patience,
            batch_size=batch_size,
            on_epoch=on_epoch,
        )
    params["epochs_run"] = len(history.get("loss", []))
    keras_predictor = KerasPredictor(pre, model, data.task, classes)
    return keras_predictor, params, history, _features_of(pre, features), []


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


def _gate_rows(data: Dataset, s: Splits) -> pd.DataFrame:
    """The candidate's test rows with every column it has, --drop ones included."""
    if data.extra is None:
        return s.X_test
    return s.X_test.join(data.extra.loc[s.X_test.index])


def _gate(
    name: str,
    card: ModelCard,
    predictor: Predictor,
    data: Dataset,
    s: Splits,
    settings: TrainingSettings,
) -> GateResult:
    from modelport import store

    result = GateResult(failures=check_minimums(card.evaluation.test, settings.gate_min_metrics))
    prod = store.production_model(name)
    if prod is None:
        result.notes.append(f"no production version of {name!r} to compare with")
        return result
    prod_card = store.card_of(prod)
    if prod_card.task != card.task or prod_card.target != card.target:
        result.failures.append(
            f"production {prod.tag} is a {prod_card.task} model of {prod_card.target!r}, "
            f"this one a {card.task} model of {card.target!r}: they cannot be compared; "
            f"train under another --name, or use --force to register it anyway"
        )
        return result
    rows = s.X_test
    same_features = prod_card.feature_names == card.feature_names
    if not same_features:
        rows = _gate_rows(data, s)
        lacking = [f for f in prod_card.feature_names if f not in rows.columns]
        if lacking:
            listed = ", ".join(repr(f) for f in lacking)
            drops = " ".join(f"--drop {f!r}" for f in lacking)
            result.failures.append(
                f"production {prod.tag} uses feature(s) {listed} that this data does not "
                f"have, so it cannot be scored on this model's test split; keep the "
                f"column(s) in the CSV and leave them out of the model with {drops}, "
                f"or use --force after comparing the reports"
            )
            return result
        rows = rows[prod_card.feature_names]
    metric, ours = evaluate.headline_score(card.task, s.y_test, predictor.predict(s.X_test))
    try:
        prod_out = store.predictor_of(prod, prod_card).predict(rows)
    except Exception as exc:  # e.g. a missing value production has no rule for
        result.failures.append(
            f"production {prod.tag} cannot score this model's test split "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"compare the reports and use --force to register it anyway"
        )
        return result
    _, theirs = evaluate.headline_score(card.task, s.y_test, prod_out)
    failure = compare_with_production(metric, ours, theirs, settings.gate_tolerance, str(prod.tag))
    if failure:
        result.failures.append(failure)
    else:
        how = "same split" if same_features else "this model's test split, its own features"
        result.notes.append(
            f"test {metric} {ours:.4f} vs production {prod.tag} {theirs:.4f} ({how})"
        )
    return result


def overfit_check(
    score_name: str, train: float, val: float, settings: TrainingSettings
) -> tuple[bool, str]:
    """Flag a model whose train score beats its validation score both by more than
    a minimum absolute gap for the metric and by more than a share of the train
    score: a healthy linear model's small, noisy gap does not fire it."""
    floor = settings.overfit_gap if score_name == "accuracy" else settings.overfit_gap_r2
    gap = train - val
    relative = gap / max(abs(train), 1e-12)
    rule = (
        f"over-fitted when train {score_name} - validation {score_name} > {floor:g} "
        f"and > {settings.overfit_relative_gap:.0%} of the train {score_name}"
    )
    return bool(gap > floor and relative > settings.overfit_relative_gap), rule


def fingerprint(
    data: Dataset, framework: Framework, choice: Choice, settings: TrainingSettings
) -> str:
    """The same data and the same parameters give the same fingerprint (and model)."""
    keys = {
        "data": data.sha256,
        "target": data.target,
        "task": data.task,
        "features": list(map(str, data.X.columns)),
        "impute": data.impute,
        "framework": framework,
        "estimator": choice.estimator,
        "params": choice.params,
        "search": [choice.search, choice.budget_s if choice.search else None],
        "unknown_categories": choice.unknown_categories,
        "settings": settings.model_dump(
            mode="json",
            include={
                "seed",
                "test_size",
                "validation_size",
                "keras_epochs",
                "keras_patience",
                "keras_batch_size",
            },
        ),
    }
    return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()


def existing_version(name: str, digest: str) -> Any:
    """The newest stored version of ``name`` with this fingerprint, if any."""
    from bentoml.exceptions import NotFound

    from modelport import store

    try:
        models = store.list_models(name)
    except NotFound:
        return None
    for model in models:
        raw = model.info.metadata.get("modelport", {})
        if isinstance(raw, dict) and raw.get("fingerprint") == digest:
            return model
    return None


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
            for artifact in card.artifacts:  # the ONNX form, hashed with the rest
                if artifact.accepted and artifacts_dir is not None:
                    shutil.copy2(artifacts_dir / artifact.path, Path(model.path) / artifact.path)
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
    choice: Choice | None = None,
) -> TrainResult:
    import bentoml

    from modelport import store

    choice = choice or Choice()
    digest = fingerprint(data, framework, choice, settings)
    same = None if force else existing_version(name, digest)
    if same is not None:
        version = str(same.tag).split(":", 1)[1]
        note = (
            f"same data (sha256 {data.sha256[:12]}) and parameters as {same.tag}: "
            f"no new version (use --force to train again)"
        )
        return TrainResult(
            str(same.tag),
            store.card_of(same),
            settings.reports_dir / name / version / "report.html",
            GateResult(notes=[note]),
            registered=False,
            notes=[note],
            existing=True,
        )

    tag = str(bentoml.Tag(name, None).make_new_version())
    s = split(data, settings)
    classes = _classes(data.y) if data.task == "classification" else None
    console.print(
        f"[bold]{tag}[/]: {framework} {data.task}, rows train/validation/test "
        f"{len(s.X_train)}/{len(s.X_val)}/{len(s.X_test)}"
    )
    predictor, params, history, features, board = _fit(
        framework, data, s, classes, settings, console, choice
    )
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
            features=features,
            board=board,
            choice=choice,
            digest=digest,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _summary(data: Dataset) -> DataSummary:
    if data.summary is not None:
        return data.summary
    kinds: dict[str, int] = {}
    for spec in feature_specs(data.X):
        kinds[spec.kind] = kinds.get(spec.kind, 0) + 1
    return DataSummary(
        rows=len(data.X),
        rows_used=len(data.X),
        columns=kinds,
        impute=data.impute,
        missing={str(c): int(n) for c, n in data.X.isna().sum().items() if n},
        class_counts=(
            {str(k): int(v) for k, v in data.y.value_counts().sort_index().items()}
            if data.task == "classification"
            else None
        ),
    )


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
    *,
    features: list[Any],
    board: list[Candidate],
    choice: Choice,
    digest: str,
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
    elif isinstance(predictor, SklearnPredictor):
        artifacts = optimize.sklearn_artifacts(
            predictor,
            s.X_test,
            s.y_test,
            settings.artifact_tolerance,
            workdir,
            lambda p: _sample(p, s.X_test, settings.sample_rows),
            console,
        )

    test_out = predictor.predict(s.X_test)
    per_class = None
    if data.task == "classification":
        assert classes is not None
        test = evaluate.classification_metrics(s.y_test, test_out, classes)
        confusion = test.pop("confusion_matrix")
        per_class = test.pop("per_class")
    else:
        test, confusion = evaluate.regression_metrics(s.y_test, test_out), None
    score_name, train_score = evaluate.headline_score(
        data.task, s.y_train, predictor.predict(s.X_train)
    )
    _, val_score = evaluate.headline_score(data.task, s.y_val, predictor.predict(s.X_val))
    gap = train_score - val_score
    overfit, rule = overfit_check(score_name, train_score, val_score, settings)
    card = ModelCard(
        framework=framework,
        task=data.task,
        target=data.target,
        classes=classes,
        features=features,
        evaluation=Evaluation(
            test=test,
            confusion_matrix=confusion,
            train_score=train_score,
            validation_score=val_score,
            score_name=score_name,
            overfit_gap=gap,
            overfit=overfit,
            overfit_rule=rule,
            per_class=per_class,
        ),
        params={
            **params,
            "seed": settings.seed,
            "test_size": settings.test_size,
            "validation_size": settings.validation_size,
            "impute": data.impute,
        },
        drift=_drift_reference(data, s, classes, settings),
        sample=_sample(predictor, s.X_test, settings.sample_rows),
        integrity=Integrity(data_sha256=data.sha256, files={}),
        data_source=data.source,
        rows={"train": len(s.X_train), "validation": len(s.X_val), "test": len(s.X_test)},
        artifacts=artifacts,
        linear=(  # the serving form that needs no scikit-learn, when the model has one
            linear_form(predictor.estimator, [f.name for f in features])
            if isinstance(predictor, SklearnPredictor)
            else None
        ),
        unknown_categories=choice.unknown_categories,
        data=_summary(data),
        leaderboard=board or None,
        fingerprint=digest,
    )
    from modelport.explain import annotate_card

    # Explanation reference (training means, background rows) and global importance.
    card, why = annotate_card(card, predictor, s.X_train, s.X_test, settings.seed)
    if why:
        console.print(f"[yellow]{why}[/]")
    gate = _gate(name, card, predictor, data, s, settings)
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
