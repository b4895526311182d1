"""Loading and validating training data: built-in recipes and users' CSV files.

Every problem raises :class:`DataError` with a message naming the file, the
column and (where it helps) the line and the value, before anything touches the
model store. What is forgiven: the delimiter and encoding are sniffed, a UTF-8 BOM
and quoted fields are read, missing feature values are imputed (or their rows
dropped), ISO dates become numeric parts inside the model, and rows without a
target are dropped (all counted in the model card's data summary).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from modelport.features import is_iso_date, parse_dates
from modelport.metadata import DataSummary, FeatureSpec, ImputeStrategy, Task

# A target with at most this many distinct integer values is taken for classes.
_MAX_CLASSES_INFERRED = 20
# A text column is a numeric one with typos when at least this share of its values
# are numbers.
_NUMERIC_SHARE = 0.9
_DELIMITERS = (",", ";", "\t", "|")
IMPUTE_STRATEGIES: tuple[ImputeStrategy, ...] = ("median", "most_frequent", "drop")


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
    summary: DataSummary | None = None
    # Columns removed with --drop (same rows as X): a production model that still
    # uses them can be scored on the candidate's test split.
    extra: pd.DataFrame | None = None
    impute: ImputeStrategy = "median"

    @property
    def target(self) -> str:
        return str(self.y.name)


@dataclass(frozen=True)
class Table:
    """A CSV file as read, with the dialect used."""

    frame: pd.DataFrame
    delimiter: str
    encoding: str
    sha256: str = ""
    notes: list[str] = field(default_factory=list)


def frame_sha256(frame: pd.DataFrame) -> str:
    """Content hash of a frame (for data that does not come from a file)."""
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def _line(index: object) -> int:
    # Line in the CSV file: one header line, rows counted from 1.
    return int(index) + 2  # type: ignore[call-overload]


def sniff_encoding(raw: bytes) -> str:
    """utf-8-sig (a BOM), utf-16 (its BOM), utf-8, else cp1252 or latin-1."""
    if raw.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for encoding in ("utf-8", "cp1252"):
        try:
            raw.decode(encoding)
            return encoding
        except UnicodeDecodeError:
            continue
    return "latin-1"  # decodes any bytes


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first lines into the same number (>1) of fields,
    the most fields winning; ``,`` when none does."""
    lines = text.splitlines()[:50]
    if len(lines) > 1 and not text.endswith("\n"):
        lines = lines[:-1]  # the sample may end mid-line
    best, fields = ",", 1
    for delimiter in _DELIMITERS:
        counts = {len(row) for row in csv.reader(lines, delimiter=delimiter) if row}
        if len(counts) == 1 and (n := counts.pop()) > fields:
            best, fields = delimiter, n
    return best


def read_csv(path: Path, *, sep: str | None = None, encoding: str | None = None) -> Table:
    """Read a CSV file, sniffing the delimiter and encoding unless given."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV file")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    enc = encoding or sniff_encoding(raw)
    try:
        codecs.lookup(enc)
        text = raw.decode(enc)
    except LookupError:
        raise DataError(f"{path}: unknown encoding {enc!r} (--encoding)") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not {enc} text ({exc.reason} at byte {exc.start}); "
            f"give the file's encoding with --encoding"
        ) from None
    if text.startswith("\ufeff"):  # a BOM under an explicit --encoding utf-8
        text = text[1:]
    delimiter = sep if sep is not None else sniff_delimiter(text[: 1 << 16])
    if delimiter == "\\t":
        delimiter = "\t"
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty (no header line)") from None
    except pd.errors.ParserError as exc:
        # pandas names the line ("Expected 3 fields in line 7, saw 4").
        raise DataError(f"{path}: not a well-formed CSV file: {str(exc).strip()}") from None
    if frame.empty:
        raise DataError(f"{path}: has a header but no data rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return Table(frame, delimiter, enc, hashlib.sha256(raw).hexdigest())


def _is_continuous(y: pd.Series) -> bool:
    if not ptypes.is_numeric_dtype(y) or ptypes.is_bool_dtype(y):
        return False
    values = y.to_numpy(dtype=float)
    return y.nunique() > _MAX_CLASSES_INFERRED and not np.all(values == np.round(values))


def infer_task(y: pd.Series) -> Task:
    if y.nunique() == 2:  # two values are two classes, whatever their type
        return "classification"
    if not ptypes.is_numeric_dtype(y) or ptypes.is_bool_dtype(y):
        return "classification"
    if ptypes.is_integer_dtype(y) and y.nunique() <= _MAX_CLASSES_INFERRED:
        return "classification"
    return "regression"


def _as_classes(y: pd.Series) -> pd.Series:
    # 1.0/2.0 are the classes 1 and 2: integer labels in the card and in responses.
    if ptypes.is_float_dtype(y) and np.all(y.to_numpy() == np.round(y.to_numpy())):
        return y.astype("int64")
    if ptypes.is_bool_dtype(y):
        return y.astype("int64")
    return y


def _names(values: list[object], limit: int = 10) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _text_column(
    col: pd.Series, column: str, source: str, max_categories: int
) -> tuple[pd.Series, str]:
    """A non-numeric feature as dates, categories, or an error naming what to do."""
    present = col.dropna()
    text = present.astype(str).str.strip()
    if len(text) and text.map(is_iso_date).all():
        return col.where(col.isna(), col.astype(str).str.strip()), "datetime"
    numbers = pd.to_numeric(text, errors="coerce")
    if len(text) and numbers.notna().mean() >= _NUMERIC_SHARE:
        bad = text[numbers.isna()]
        raise DataError(
            f"{source}: column {column!r} is numeric but line {_line(bad.index[0])} has "
            f"{bad.iloc[0]!r} ({len(bad)} value(s) are not numbers: "
            f"{_names(sorted(set(bad.tolist())), 5)}); fix those values, or leave them "
            f"empty to have them imputed"
        )
    n = text.nunique()
    if n > max_categories:
        raise DataError(
            f"{source}: column {column!r} is text with {n} distinct values, more than "
            f"{max_categories} can be one-hot encoded; drop it (--drop {column!r}), "
            f"replace it in the file with a hashed or bucketed version, or declare it "
            f"categorical by raising MODELPORT_MAX_CATEGORIES to {n} or more"
        )
    return col.where(col.isna(), col.astype(str)), "categorical"


def build_dataset(
    frame: pd.DataFrame,
    target: str,
    *,
    source: str,
    sha256: str,
    task: Task | None,
    min_rows: int,
    max_categories: int,
    impute: ImputeStrategy = "median",
    drop: tuple[str, ...] = (),
    delimiter: str | None = None,
    encoding: str | None = None,
) -> Dataset:
    """Check a frame for training and split it into features and target."""
    frame = frame.rename(columns=str)
    if impute not in IMPUTE_STRATEGIES:
        raise DataError(f"--impute {impute!r}: choose one of {', '.join(IMPUTE_STRATEGIES)}")
    if target not in frame.columns:
        cols = ", ".join(repr(c) for c in frame.columns)
        hint = ""
        if len(frame.columns) == 1:
            hint = " (one column only: is the delimiter right? give it with --sep)"
        raise DataError(f"{source}: target column {target!r} not found; columns are: {cols}{hint}")
    dupes = frame.columns[frame.columns.duplicated()].tolist()
    if dupes:
        raise DataError(f"{source}: duplicate column names: {dupes}")
    unknown = [c for c in drop if c not in frame.columns]
    if unknown:
        raise DataError(f"{source}: --drop column(s) {_names(list(unknown))} not found")
    if target in drop:
        raise DataError(f"{source}: --drop cannot drop the target {target!r}")
    rows = len(frame)
    dropped_rows: dict[str, int] = {}
    no_target = frame[target].isna()
    if no_target.any():
        dropped_rows["missing target"] = int(no_target.sum())
        frame = frame[~no_target]
    extra = frame[list(drop)] if drop else None
    X = frame.drop(columns=[target, *drop])
    y = frame[target]
    if X.shape[1] == 0:
        raise DataError(f"{source}: no feature columns besides the target {target!r}")

    kinds: dict[str, str] = {}
    for column in X.columns:
        col = X[column]
        if col.isna().all():
            raise DataError(
                f"{source}: column {column!r} has no values at all; drop it (--drop {column!r})"
            )
        if ptypes.is_bool_dtype(col):
            X[column], kinds[column] = col.astype("int64"), "numeric"
        elif ptypes.is_numeric_dtype(col):
            kinds[column] = "numeric"
        else:
            X[column], kinds[column] = _text_column(col, column, source, max_categories)

    missing = {str(c): int(n) for c, n in X.isna().sum().items() if n}
    if missing and impute == "drop":
        incomplete = X.isna().any(axis=1)
        dropped_rows["missing feature values (--impute drop)"] = int(incomplete.sum())
        X, y = X[~incomplete], y[~incomplete]
        extra = extra[~incomplete] if extra is not None else None

    if task == "classification" and _is_continuous(y):
        raise DataError(
            f"{source}: target {target!r} looks continuous ({y.nunique()} distinct numeric "
            f"values), not classes; use --task regression, or bin it into classes"
        )
    resolved: Task = task or infer_task(y)
    if resolved == "regression":
        if not ptypes.is_numeric_dtype(y) or ptypes.is_bool_dtype(y):
            bad = y[pd.to_numeric(y, errors="coerce").isna()]
            raise DataError(
                f"{source}: regression target {target!r} is not numeric "
                f"(e.g. {bad.iloc[0]!r} at line {_line(bad.index[0])})"
            )
    else:
        y = _as_classes(y)
        counts = y.value_counts()
        if len(counts) < 2:
            raise DataError(
                f"{source}: target {target!r} has a single class ({counts.index[0]!r}); "
                f"classification needs at least two"
            )
        rare = counts[counts < 3]
        if not rare.empty:
            raise DataError(
                f"{source}: {len(rare)} class(es) of target {target!r} have fewer than 3 "
                f"rows ({_names(rare.index.tolist())}); each class needs rows in the train, "
                f"validation and test splits"
            )
    if len(X) < min_rows:
        raise DataError(
            f"{source}: {len(X)} rows are too few for a train/validation/test split "
            f"(need at least {min_rows})"
        )
    by_kind: dict[str, int] = {}
    for kind in kinds.values():
        by_kind[kind] = by_kind.get(kind, 0) + 1
    summary = DataSummary(
        rows=rows,
        rows_used=len(X),
        dropped_rows=dropped_rows,
        columns=by_kind,
        dropped_columns=list(drop),
        impute=impute,
        missing=missing,
        class_counts=(
            {str(k): int(v) for k, v in y.value_counts().sort_index().items()}
            if resolved == "classification"
            else None
        ),
        delimiter=delimiter,
        encoding=encoding,
    )
    return Dataset(X, y, resolved, source, sha256, summary, extra, impute)


def validate_frame(
    frame: pd.DataFrame,
    target: str,
    *,
    source: str,
    task: Task | None,
    min_rows: int,
    max_categories: int,
    impute: ImputeStrategy = "median",
) -> tuple[pd.DataFrame, pd.Series, Task]:
    """:func:`build_dataset` for callers that only want features, target and task."""
    data = build_dataset(
        frame,
        target,
        source=source,
        sha256="",
        task=task,
        min_rows=min_rows,
        max_categories=max_categories,
        impute=impute,
    )
    return data.X, data.y, data.task


def load_csv(
    path: Path,
    target: str,
    *,
    task: Task | None,
    min_rows: int,
    max_categories: int,
    impute: ImputeStrategy = "median",
    drop: tuple[str, ...] = (),
    sep: str | None = None,
    encoding: str | None = None,
) -> Dataset:
    table = read_csv(path, sep=sep, encoding=encoding)
    return build_dataset(
        table.frame,
        target,
        source=str(path),
        sha256=table.sha256,
        task=task,
        min_rows=min_rows,
        max_categories=max_categories,
        impute=impute,
        drop=drop,
        delimiter=table.delimiter,
        encoding=table.encoding,
    )


def feature_specs(X: pd.DataFrame) -> list[FeatureSpec]:
    """The raw input features; imputation values are added when the pipeline is fitted."""
    specs = []
    for name in X.columns:
        col = X[name]
        missing = int(col.isna().sum())
        present = col.dropna()
        if ptypes.is_numeric_dtype(col):
            specs.append(
                FeatureSpec(
                    name=str(name),
                    kind="numeric",
                    dtype=str(col.dtype),
                    min=float(present.min()),
                    max=float(present.max()),
                    missing=missing,
                )
            )
        elif len(present) and present.map(is_iso_date).all():
            stamps = parse_dates(present)
            specs.append(
                FeatureSpec(
                    name=str(name),
                    kind="datetime",
                    dtype="datetime (ISO 8601 text)",
                    missing=missing,
                    date_range=[stamps.min().isoformat(), stamps.max().isoformat()],
                )
            )
        else:
            specs.append(
                FeatureSpec(
                    name=str(name),
                    kind="categorical",
                    dtype=str(col.dtype),
                    categories=sorted(present.astype(str).unique().tolist()),
                    missing=missing,
                )
            )
    return specs
