"""Request validation against a model's feature schema.

Every rejection is an :class:`InputError` whose message names the field and the
problem; the service turns it into a 4xx JSON response. Never a 500 for bad input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from modelport.metadata import ModelCard
from service.transport import InputError, show

__all__ = [
    "Batch",
    "InputError",
    "Schema",
    "batch_from_columns",
    "check_batch_size",
    "parse_instances",
]


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(show(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _describe(value: Any) -> str:
    kind = {str: "a string", bool: "a boolean", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )
    return f"{kind} {show(value)}" if isinstance(value, str | bool) else kind


def check_batch_size(n: int, max_rows: int, field: str) -> None:
    if n == 0:
        raise InputError(f"{field}: empty batch; send at least one instance")
    if n > max_rows:
        raise InputError(
            f"{field}: {n} instances exceed the limit of {max_rows} per request", status=413
        )


def _number(value: Any, where: str, missing: list[str], feature: str) -> float:
    if value is None:
        missing.append(feature)
        raise InputError(f"{where}: missing value (null)", missing=missing)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where}: expected a number, got {_describe(value)}")
    try:
        number = float(value)  # an integer past float's range overflows here
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        shown = value if isinstance(value, float) else f"an integer of {len(str(value))} digits"
        raise InputError(f"{where}: must be a finite number, got {shown}")
    return number


def _category(value: Any, where: str, missing: list[str], feature: str) -> str:
    if value is None:
        missing.append(feature)
        raise InputError(f"{where}: missing value (null)", missing=missing)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputError(f"{where}: expected a string or number, got {_describe(value)}")
    return str(value)


class Schema:
    """A model's feature layout, worked out once at load so requests only look it up."""

    def __init__(self, card: ModelCard) -> None:
        self.card = card
        self.names = card.feature_names
        self.expected = frozenset(self.names)
        self.numeric = [f.name for f in card.features if f.kind == "numeric"]
        # Models with only numeric features never need a DataFrame: the hot path.
        self.all_numeric = len(self.numeric) == len(self.names)
        # Categories a value must be one of, for models whose policy refuses unseen ones.
        refuse = getattr(card, "unknown_categories", "ignore") == "error"
        self.known = {
            f.name: frozenset(f.categories)
            for f in card.features
            if refuse and f.kind == "categorical" and f.categories is not None
        }


@dataclass(frozen=True)
class Batch:
    """Validated rows. ``numeric``: (n, k) float64, the numeric features in schema order;
    ``frame``: every feature as a DataFrame, only for models with categorical features."""

    numeric: np.ndarray
    frame: pd.DataFrame | None = None
    # Features whose missing values were imputed (the model card's rule), one per value.
    imputed: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return int(self.numeric.shape[0])

    @property
    def model_input(self) -> np.ndarray | pd.DataFrame:
        return self.numeric if self.frame is None else self.frame


_NUMBER_TYPES = {float, int}


def _fast_numeric(instances: list[Any], names: list[str]) -> np.ndarray | None:
    """The common case in one pass: every row an object with exactly the expected
    finite numbers. ``None`` when anything is off; the careful parser then names it."""
    k = len(names)
    pick = itemgetter(*names) if k > 1 else (lambda row: (row[names[0]],))
    try:
        rows = list(map(pick, instances))  # C-level lookups, row by row
    except (KeyError, TypeError):
        return None
    if any(len(row) != k for row in instances):
        return None  # extra keys
    # Exact types, so booleans (a subclass of int) and numeric strings are refused.
    if not set(map(type, chain.from_iterable(rows))) <= _NUMBER_TYPES:
        return None
    try:
        X = np.array(rows, dtype=float)
    except OverflowError:
        return None
    return X if np.isfinite(X).all() else None


def parse_instances(instances: Any, schema: Schema, max_rows: int) -> Batch:
    """Rows of named feature values -> a :class:`Batch` in the model's feature order."""
    if not isinstance(instances, list):
        raise InputError(f"instances: expected a list of objects, got {_describe(instances)}")
    check_batch_size(len(instances), max_rows, "instances")
    if schema.all_numeric:
        X = _fast_numeric(instances, schema.names)
        if X is not None:
            return Batch(X)
    card = schema.card
    names = schema.names
    expected = schema.expected
    imputed: list[str] = []
    columns: dict[str, list[Any]] = {n: [] for n in names}
    for i, row in enumerate(instances):
        if not isinstance(row, dict):
            raise InputError(
                f"instances[{i}]: expected an object of feature values, got {_describe(row)}"
            )
        if row.keys() != expected:
            absent = [n for n in names if n not in row]
            extra = [str(k) for k in row if k not in expected]
            if absent:
                raise InputError(
                    f"instances[{i}]: missing feature(s) {_names(absent)}", missing=absent
                )
            raise InputError(
                f"instances[{i}]: unknown feature(s) {_names(extra)}; the model expects "
                f"{len(names)} features: {_names(names)}"
            )
        missing: list[str] = []
        for spec in card.features:
            where = f"instances[{i}].{spec.name}"
            value = row[spec.name]
            if value is None and spec.impute is not None:
                # The model's pipeline would impute the same value: it is substituted
                # here so drift counts see what the model sees, and counted as missing.
                imputed.append(spec.name)
                value = spec.impute
            if spec.kind == "numeric":
                columns[spec.name].append(_number(value, where, missing, spec.name))
            else:
                columns[spec.name].append(_category(value, where, missing, spec.name))
    check_values(columns, schema, lambda i, feature: f"instances[{i}].{feature}")
    batch = batch_from_columns(columns, schema)
    return Batch(batch.numeric, batch.frame, tuple(imputed)) if imputed else batch


def check_values(columns: dict[str, Any], schema: Schema, where: Callable[[int, str], str]) -> None:
    """The value rules of text features: a datetime feature takes ISO 8601 text; a
    categorical one, under the model's ``error`` policy, only categories seen in
    training. ``where(row, feature)`` names a value in the message."""
    for spec in schema.card.features:
        if spec.kind == "datetime":
            from modelport.features import is_iso_date

            for i, v in enumerate(columns[spec.name]):
                if not is_iso_date(v):
                    raise InputError(
                        f"{where(i, spec.name)}: expected an ISO 8601 date or date-time "
                        f"(e.g. 2024-03-01 or 2024-03-01T12:30:00Z), got {show(v)}"
                    )
        known = schema.known.get(spec.name)
        if known is not None:
            for i, v in enumerate(columns[spec.name]):
                if v not in known:
                    raise InputError(
                        f"{where(i, spec.name)}: unknown category {show(v)}; known "
                        f"categories: {_names(sorted(known), 10)}"
                    )


def batch_from_columns(columns: dict[str, Any], schema: Schema) -> Batch:
    """Validated columns (one per feature) -> a :class:`Batch`."""
    numeric = (
        np.column_stack([np.asarray(columns[n], dtype=float) for n in schema.numeric])
        if schema.numeric
        else np.empty((len(columns[schema.names[0]]), 0))
    )
    if schema.all_numeric:
        return Batch(numeric)
    data = {
        spec.name: np.asarray(columns[spec.name], dtype=float if spec.kind == "numeric" else object)
        for spec in schema.card.features
    }
    import pandas as pd  # deferred: only models with categorical features get here

    return Batch(numeric, pd.DataFrame(data, columns=schema.names))
