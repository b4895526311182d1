"""Offline batch scoring: ``modelport score MODEL --csv FILE --out FILE``.

Inputs are checked with the model card's own value rules
(:func:`modelport.features.prepare_frame`: numbers, ISO dates, imputation, the
model's unknown-category policy) before anything is predicted, and the first bad
value stops the run with its line and column named; no output file is written then.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from modelport.features import FeatureError, prepare_frame
from training.data import DataError, read_csv


@dataclass(frozen=True)
class ScoreResult:
    tag: str
    rows: int
    out: Path
    imputed: dict[str, int]


def score_csv(
    model_tag: str,
    csv: Path,
    out: Path,
    *,
    console: Console,
    sep: str | None = None,
    encoding: str | None = None,
    chunk_rows: int = 5000,
) -> ScoreResult:
    """Predict every row of ``csv`` and write the rows with ``prediction`` (and one
    ``probability_<class>`` column per class) to ``out`` (same delimiter)."""
    from modelport import store

    model = store.resolve(model_tag)
    card = store.card_of(model)
    table = read_csv(csv, sep=sep, encoding=encoding)
    frame = table.frame
    lacking = [n for n in card.feature_names if n not in frame.columns]
    if lacking:
        listed = ", ".join(repr(n) for n in lacking)
        raise DataError(f"{csv}: missing feature column(s) {listed} that {model.tag} needs")
    for name in ["prediction", *(f"probability_{c}" for c in card.classes or [])]:
        if name in frame.columns:
            raise DataError(f"{csv}: already has a column {name!r}, which the output adds")

    def where(i: int, feature: str) -> str:
        return f"{csv}: line {i + 2}, column {feature!r}"

    inputs = frame[card.feature_names].copy()
    try:
        prepared = prepare_frame(
            inputs, card.features, unknown=card.unknown_categories, where=where
        )
    except FeatureError as exc:
        raise DataError(str(exc)) from None
    # The model takes raw values (its pipeline applies the same rules): numbers as
    # numbers, text as text, missing values left for its imputation step.
    for spec in card.features:
        col = inputs[spec.name]
        if spec.kind == "numeric":
            inputs[spec.name] = pd.to_numeric(col)
        else:
            inputs[spec.name] = col.astype(object).where(col.isna(), col.astype(str))

    predictor = store.predictor_of(model, card)
    predictions: list[object] = []
    probabilities: list[np.ndarray] = []
    with Progress(
        TextColumn(f"[bold]scoring[/] {model.tag}"),
        MofNCompleteColumn(),
        BarColumn(),
        console=console,
        transient=False,
    ) as progress:
        bar = progress.add_task("rows", total=len(inputs))
        for start in range(0, len(inputs), chunk_rows):
            result = predictor.predict(inputs.iloc[start : start + chunk_rows])
            predictions += result.predictions
            if result.probabilities is not None:
                probabilities.append(result.probabilities)
            progress.advance(bar, min(chunk_rows, len(inputs) - start))

    scored = frame.copy()
    scored["prediction"] = predictions
    if probabilities and card.classes is not None:
        matrix = np.vstack(probabilities)
        for j, cls in enumerate(card.classes):
            scored[f"probability_{cls}"] = matrix[:, j]
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside, then renamed: a failed run never leaves half a file.
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    os.close(fd)
    try:
        scored.to_csv(tmp, index=False, sep=table.delimiter)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ScoreResult(str(model.tag), len(scored), out, prepared.imputed)
