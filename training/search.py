"""Cross-validated model selection within a time budget (``modelport train --search``).

Candidates are estimator families times a small grid of their key parameters,
cheapest families first. Each is scored by k-fold cross-validation on the train
split only (the headline metric: accuracy or R²), so the validation split still
measures over-fitting and the test split is used once, for the chosen model.
When the budget runs out no new candidate starts; the ones done are ranked.
"""

from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.model_selection import KFold, StratifiedKFold

from modelport.metadata import Candidate, FeatureSpec, ImputeStrategy, Task
from modelport.predictors import SklearnPredictor
from training import estimators, evaluate

# Cheap families first, so a short budget still ranks several.
ORDER = (
    "linear",
    "ridge",
    "lasso",
    "knn",
    "decision-tree",
    "hist-gradient-boosting",
    "svm",
    "random-forest",
)
FOLDS = 5


@dataclass(frozen=True)
class Plan:
    family: str
    overrides: dict[str, Any]


def plans(task: Task, families: list[str], seed: int) -> list[Plan]:
    """Every family's grid, restricted to the parameters its task's estimator has."""
    out: list[Plan] = []
    for family in families:
        fam = estimators.FAMILIES[family]
        known = estimators.make_estimator(family, task, seed, {}).get_params()
        grid = {k: v for k, v in fam.grid.items() if k in known}
        keys = sorted(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            out.append(Plan(family, dict(zip(keys, values, strict=True))))
    return out


def parse_budget(text: str) -> float:
    """``120s``, ``2m``, ``90`` (seconds) -> seconds."""
    raw = text.strip().lower()
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(raw[-1:])
    number = raw[:-1] if scale else raw
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        raise ValueError(f"--budget {text!r}: expected seconds, e.g. 120s or 2m") from None
    if value <= 0:
        raise ValueError(f"--budget {text!r}: must be positive")
    return value


def latency_us(predictor: SklearnPredictor, X: pd.DataFrame, names: list[str]) -> float:
    """Median single-row predict time as the service calls it (array fast path for
    all-numeric models when it applies, else a one-row frame)."""
    row: pd.DataFrame | np.ndarray = X.head(1)
    numeric = all(pd.api.types.is_numeric_dtype(X[n]) for n in names)
    if numeric and predictor.enable_fast_path(names, X.head(5)) is None:
        row = X.head(1)[names].to_numpy(dtype=float)
    for _ in range(3):
        predictor.scores(row)
    times = []
    for _ in range(25):
        start = time.perf_counter()
        predictor.scores(row)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def run_search(
    task: Task,
    features: list[FeatureSpec],
    X: pd.DataFrame,
    y: np.ndarray,
    classes: list[Any] | None,
    *,
    families: list[str],
    budget_s: float,
    seed: int,
    impute: ImputeStrategy,
    console: Console,
) -> tuple[list[Candidate], list[str]]:
    """Leaderboard (best first, the best marked ``chosen``) and notes (skipped candidates)."""
    todo = plans(task, families, seed)
    names = [f.name for f in features]
    y_fit = y if classes is None else np.searchsorted(classes, y)
    splitter: Any = (
        StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
        if classes is not None
        else KFold(FOLDS, shuffle=True, random_state=seed)
    )
    folds = list(splitter.split(X, y_fit))
    board: list[Candidate] = []
    skipped = 0
    start = time.perf_counter()
    with Progress(
        TextColumn("[bold]search[/] {task.fields[candidate]}"),
        MofNCompleteColumn(),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn(f"budget {budget_s:.0f}s"),
        console=console,
        transient=False,
    ) as progress:
        bar = progress.add_task("cv", total=len(todo) * FOLDS, candidate="")
        for plan in todo:
            if board and time.perf_counter() - start > budget_s:
                skipped += 1
                progress.advance(bar, FOLDS)
                continue
            label = f"{plan.family} {plan.overrides}"
            progress.update(bar, candidate=label)
            scores, fit_times = [], []
            predictor: SklearnPredictor | None = None
            for train_idx, val_idx in folds:
                if board and time.perf_counter() - start > budget_s:
                    break  # over budget mid-candidate: it is dropped, not half-scored
                pipeline, _ = estimators.build_sklearn(
                    task, features, seed, plan.family, plan.overrides, impute
                )
                t0 = time.perf_counter()
                pipeline.fit(X.iloc[train_idx], y_fit[train_idx])
                fit_times.append(time.perf_counter() - t0)
                predictor = SklearnPredictor(pipeline, task, classes)
                out = predictor.predict(X.iloc[val_idx])
                scores.append(evaluate.headline_score(task, y[val_idx], out)[1])
                progress.advance(bar)
            if len(scores) < FOLDS:
                skipped += 1
                progress.advance(bar, FOLDS - len(scores))
                continue
            assert predictor is not None
            metric = "accuracy" if task == "classification" else "r2"
            board.append(
                Candidate(
                    estimator=plan.family,
                    params=plan.overrides,
                    metric=metric,
                    cv_mean=round(float(np.mean(scores)), 6),
                    cv_std=round(float(np.std(scores)), 6),
                    fit_seconds=round(float(np.mean(fit_times)), 4),
                    predict_us_per_row=round(latency_us(predictor, X, names), 1),
                )
            )
    # Best mean; ties go to the steadier, then the faster candidate.
    board.sort(key=lambda c: (-c.cv_mean, c.cv_std, c.predict_us_per_row))
    if not board:
        raise RuntimeError("the search budget ran out before any candidate finished")
    board[0] = board[0].model_copy(update={"chosen": True})
    notes = []
    if skipped:
        notes.append(f"{skipped} of {len(todo)} candidates not tried: budget {budget_s:.0f}s spent")
    return board, notes
