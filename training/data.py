"""Loading and validating training data: built-in recipes and users' CSV files.

Every problem raises :class:`DataError` with a message naming the file, the
column and (where it helps) the line, before anything touches the model store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pandas.api import types as ptypes

from modelport.metadata import FeatureSpec, Task

# A target with at most this many distinct integer values is taken for classes.
_MAX_CLASSES_INFERRED = 20


class DataError(ValueError):
    """Training data that cannot be used, with a message for the user."""


@dataclass(frozen=True)
class Dataset:
    """Features and target ready for splitting, with where they came from."""

    X: pd.DataFrame
    y: pd.Series
    task: Task
    source: str
    sha256: str

    @property
    def target(self) -> str:
        return str(self.y.name)


def frame_sha256(frame: pd.DataFrame) -> str:
    """Content hash of a frame (for data that does not come from a file)."""
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def _line(index: object) -> int:
    # Line in the CSV file: one header line, rows counted from 1.
    return int(index) + 2  # type: ignore[call-overload]


def read_csv(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty (no header line)") from None
    except pd.errors.ParserError as exc:
        # pandas names the line ("Expected 3 fields in line 7, saw 4").
        raise DataError(f"{path}: not a well-formed CSV file: {str(exc).strip()}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if frame.empty:
        raise DataError(f"{path}: has a header but no data rows")
    return frame


def infer_task(y: pd.Series) -> Task:
    if not ptypes.is_numeric_dtype(y) or ptypes.is_bool_dtype(y):
        return "classification"
    if ptypes.is_integer_dtype(y) and y.nunique() <= _MAX_CLASSES_INFERRED:
        return "classification"
    return "regression"


def validate_frame(
    frame: pd.DataFrame,
    target: str,
    *,
    source: str,
    task: Task | None,
    min_rows: int,
    max_categories: int,
) -> tuple[pd.DataFrame, pd.Series, Task]:
    """Check a frame for training and split it into features and target."""
    frame = frame.rename(columns=str)
    if target not in frame.columns:
        cols = ", ".join(repr(c) for c in frame.columns)
        raise DataError(f"{source}: target column {target!r} not found; columns are: {cols}")
    dupes = frame.columns[frame.columns.duplicated()].tolist()
    if dupes:
        raise DataError(f"{source}: duplicate column names: {dupes}")
    X = frame.drop(columns=[target])
    y = frame[target]
    if X.shape[1] == 0:
        raise DataError(f"{source}: no feature columns besides the target {target!r}")

    for column in frame.columns:
        missing = frame[column].isna()
        if missing.any():
            first = _line(frame.index[missing.argmax()])
            raise DataError(
                f"{source}: column {column!r} has missing values in {int(missing.sum())} "
                f"row(s) (first at line {first}); fill or drop them before training"
            )

    for column in X.columns:
        col = X[column]
        if ptypes.is_bool_dtype(col):
            X[column] = col.astype("int64")
        elif not ptypes.is_numeric_dtype(col):
            n = col.nunique()
            if n > max_categories:
                raise DataError(
                    f"{source}: column {column!r} is text with {n} distinct values, more than "
                    f"{max_categories} can be one-hot encoded; drop it, bucket it, or raise "
                    f"MODELPORT_MAX_CATEGORIES"
                )
            X[column] = col.astype(str)

    resolved: Task = task or infer_task(y)
    if resolved == "regression":
        if not ptypes.is_numeric_dtype(y) or ptypes.is_bool_dtype(y):
            bad = y[pd.to_numeric(y, errors="coerce").isna()]
            raise DataError(
                f"{source}: regression target {target!r} is not numeric "
                f"(e.g. {bad.iloc[0]!r} at line {_line(bad.index[0])})"
            )
    else:
        counts = y.value_counts()
        if len(counts) < 2:
            raise DataError(
                f"{source}: target {target!r} has a single class ({counts.index[0]!r}); "
                f"classification needs at least two"
            )
        rare = counts[counts < 3]
        if not rare.empty:
            raise DataError(
                f"{source}: class(es) {rare.index.tolist()} of target {target!r} have fewer "
                f"than 3 rows; each class needs rows in the train, validation and test splits"
            )
    if len(frame) < min_rows:
        raise DataError(
            f"{source}: {len(frame)} rows are too few for a train/validation/test split "
            f"(need at least {min_rows})"
        )
    return X, y, resolved


def load_csv(
    path: Path, target: str, *, task: Task | None, min_rows: int, max_categories: int
) -> Dataset:
    frame = read_csv(path)
    X, y, resolved = validate_frame(
        frame,
        target,
        source=str(path),
        task=task,
        min_rows=min_rows,
        max_categories=max_categories,
    )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Dataset(X=X, y=y, task=resolved, source=str(path), sha256=digest)


def feature_specs(X: pd.DataFrame) -> list[FeatureSpec]:
    specs = []
    for name in X.columns:
        col = X[name]
        if ptypes.is_numeric_dtype(col):
            specs.append(
                FeatureSpec(
                    name=str(name),
                    kind="numeric",
                    dtype=str(col.dtype),
                    min=float(col.min()),
                    max=float(col.max()),
                )
            )
        else:
            specs.append(
                FeatureSpec(
                    name=str(name),
                    kind="categorical",
                    dtype=str(col.dtype),
                    categories=sorted(col.astype(str).unique().tolist()),
                )
            )
    return specs
