"""Per-feature value rules, applied the same way in training, batch scoring and serving.

A model card's :class:`~modelport.metadata.FeatureSpec` list describes the raw
inputs a client sends. :func:`prepare_frame` turns such raw values into the
columns the model's encoders take:

- a missing value (``None``/NaN) becomes the feature's ``impute`` value, or is an
  error when the feature has none;
- a numeric feature must hold numbers;
- a ``datetime`` feature (ISO 8601 text) becomes the numeric columns
  ``<name>.<part>`` for each part in ``DATE_PARTS`` (UTC; naive times are UTC);
- a categorical value never seen in training is an error under the ``error``
  policy and passes through under ``ignore`` (the one-hot encoder then gives all
  zeros).

:class:`modelport.steps.RawFeatures` wraps it as the first step of a scikit-learn
pipeline, for models that need it (a datetime feature or an imputed one), so a
stored model applies the rules by itself. This module imports nothing heavy:
pandas only when a function runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.metadata import DATE_PARTS, FeatureSpec, UnknownCategories

if TYPE_CHECKING:
    import pandas as pd

# ISO 8601 dates and date-times: 2024-03-01, 2024-03-01T12:30, 2024-03-01 12:30:05.123+02:00.
ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)
_SECONDS_PER_DAY = 86400.0


class FeatureError(ValueError):
    """A raw value the model cannot take; the message names where, the feature and
    the value."""

    def __init__(self, message: str, *, feature: str, row: int | None = None, value: Any = None):
        super().__init__(message)
        self.feature = feature
        self.row = row
        self.value = value


@dataclass(frozen=True)
class Prepared:
    """Model-ready columns and how many values of each feature were imputed."""

    frame: pd.DataFrame
    imputed: dict[str, int] = field(default_factory=dict)


def _instance(i: int, feature: str) -> str:
    return f"instances[{i}].{feature}"


def date_columns(name: str) -> list[str]:
    """The numeric columns a datetime feature becomes."""
    return [f"{name}.{part}" for part in DATE_PARTS]


def model_columns(specs: Sequence[FeatureSpec]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) column names of :func:`prepare_frame`'s output."""
    numeric: list[str] = []
    categorical: list[str] = []
    for spec in specs:
        if spec.kind == "numeric":
            numeric.append(spec.name)
        elif spec.kind == "datetime":
            numeric += date_columns(spec.name)
        else:
            categorical.append(spec.name)
    return numeric, categorical


def needs_rules(specs: Sequence[FeatureSpec]) -> bool:
    """Whether raw values need :func:`prepare_frame` before the encoders."""
    return any(s.kind == "datetime" or s.impute is not None for s in specs)


def is_iso_date(value: object) -> bool:
    return isinstance(value, str) and ISO_DATE.match(value.strip()) is not None


def parse_dates(values: pd.Series) -> pd.Series:
    """ISO 8601 text -> UTC timestamps without zone (NaT where not a date)."""
    import pandas as pd

    text = values.astype(str).str.strip()
    ok = text.str.match(ISO_DATE.pattern)
    parsed = pd.to_datetime(text.where(ok), format="ISO8601", utc=True, errors="coerce")
    return parsed.dt.tz_localize(None)


def expand_dates(name: str, stamps: pd.Series) -> dict[str, np.ndarray]:
    """The ``DATE_PARTS`` of each timestamp, as float columns."""
    import pandas as pd

    epoch = (stamps - pd.Timestamp(0)).dt.total_seconds() / _SECONDS_PER_DAY
    parts = {
        "year": stamps.dt.year,
        "month": stamps.dt.month,
        "day": stamps.dt.day,
        "dayofweek": stamps.dt.dayofweek,
        "hour": stamps.dt.hour,
        "epoch_days": epoch,
    }
    return {f"{name}.{p}": parts[p].to_numpy(dtype=float) for p in DATE_PARTS}


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def prepare_frame(
    frame: pd.DataFrame,
    specs: Sequence[FeatureSpec],
    *,
    unknown: UnknownCategories = "ignore",
    where: Callable[[int, str], str] = _instance,
) -> Prepared:
    """Apply each feature's rules to raw values (one column per spec, any extra
    columns ignored); raises :class:`FeatureError` on the first bad value.

    ``where(i, feature)`` names the value of ``feature`` in row ``i`` (0-based
    position) in messages: ``instances[i].feature`` by default, e.g.
    ``lambda i, f: f"line {i + 2}, column {f!r}"`` for a CSV file.
    """
    import pandas as pd

    out: dict[str, Any] = {}
    imputed: dict[str, int] = {}
    for spec in specs:
        name = spec.name
        if name not in frame.columns:
            raise FeatureError(f"missing feature {name!r}", feature=name)
        col = frame[name]
        missing = col.isna().to_numpy()
        if missing.any():
            if spec.impute is None:
                i = _first(missing)
                raise FeatureError(
                    f"{where(i, name)}: missing value, and this feature has no imputation rule",
                    feature=name,
                    row=i,
                )
            imputed[name] = int(missing.sum())
            col = col.astype(object).where(~missing, spec.impute)
        if spec.kind == "numeric":
            numbers = pd.to_numeric(col, errors="coerce")
            bad = numbers.isna().to_numpy() & ~missing
            if bad.any():
                i = _first(bad)
                raise FeatureError(
                    f"{where(i, name)}: expected a number, got {col.iloc[i]!r}",
                    feature=name,
                    row=i,
                    value=col.iloc[i],
                )
            out[name] = numbers.to_numpy(dtype=float)
        elif spec.kind == "datetime":
            stamps = parse_dates(col)
            bad = stamps.isna().to_numpy()
            if bad.any():
                i = _first(bad)
                raise FeatureError(
                    f"{where(i, name)}: expected an ISO 8601 date such as 2024-03-01 or "
                    f"2024-03-01T12:30:00, got {col.iloc[i]!r}",
                    feature=name,
                    row=i,
                    value=col.iloc[i],
                )
            out.update(expand_dates(name, stamps))
        else:
            text = col.astype(str)
            if unknown == "error" and spec.categories is not None:
                unseen = ~text.isin(spec.categories).to_numpy()
                if unseen.any():
                    i = _first(unseen)
                    known = ", ".join(repr(c) for c in spec.categories[:20])
                    more = len(spec.categories) - 20
                    known += f" and {more} more" if more > 0 else ""
                    raise FeatureError(
                        f"{where(i, name)}: unknown category {text.iloc[i]!r}; "
                        f"known categories: {known}",
                        feature=name,
                        row=i,
                        value=text.iloc[i],
                    )
            out[name] = text.to_numpy(dtype=object)
    numeric, categorical = model_columns(specs)
    return Prepared(pd.DataFrame(out, columns=numeric + categorical, index=frame.index), imputed)


def fill_value(values: pd.Series, kind: str, strategy: str) -> Any:
    """The imputation value for a feature from its training values (``strategy``:
    median or most_frequent; the median of text is its most frequent value, and of
    dates the median date)."""
    present = values.dropna()
    if present.empty:
        raise ValueError("no values to impute from")
    if kind == "numeric" and strategy == "median":
        return float(np.median(present.to_numpy(dtype=float)))
    if kind == "datetime" and strategy == "median":
        stamps = parse_dates(present).dropna().sort_values()
        return stamps.iloc[(len(stamps) - 1) // 2].isoformat()
    mode = present.astype(str if kind != "numeric" else float).value_counts(sort=True)
    # Ties: the smallest value, so the choice does not depend on row order.
    top = mode[mode == mode.iloc[0]].index
    best = sorted(top)[0]
    return float(best) if kind == "numeric" else str(best)
