"""Request validation against a model's feature schema.

Every rejection is an :class:`InputError` whose message names the field and the
problem; the service turns it into a 4xx JSON response. Never a 500 for bad input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from modelport.metadata import ModelCard


class InputError(Exception):
    """Bad client input: HTTP ``status`` with a message naming the field."""

    def __init__(self, message: str, status: int = 400, missing: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        # Features that were absent or null, for the missing-value counters.
        self.missing = missing or []


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _describe(value: Any) -> str:
    kind = {str: "a string", bool: "a boolean", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )
    return f"{kind} {value!r}" if isinstance(value, str | bool) else kind


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
    if not math.isfinite(value):
        raise InputError(f"{where}: must be a finite number, got {value}")
    return float(value)


def _category(value: Any, where: str, missing: list[str], feature: str) -> str:
    if value is None:
        missing.append(feature)
        raise InputError(f"{where}: missing value (null)", missing=missing)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputError(f"{where}: expected a string or number, got {_describe(value)}")
    return str(value)


def parse_instances(instances: Any, card: ModelCard, max_rows: int) -> pd.DataFrame:
    """Rows of named feature values -> a frame in the model's column order and dtypes."""
    if not isinstance(instances, list):
        raise InputError(f"instances: expected a list of objects, got {_describe(instances)}")
    check_batch_size(len(instances), max_rows, "instances")
    names = card.feature_names
    expected = set(names)
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
            if spec.kind == "numeric":
                columns[spec.name].append(_number(value, where, missing, spec.name))
            else:
                columns[spec.name].append(_category(value, where, missing, spec.name))
    return frame_from_columns(columns, card)


def frame_from_columns(columns: dict[str, Any], card: ModelCard) -> pd.DataFrame:
    data = {
        spec.name: np.asarray(columns[spec.name], dtype=float if spec.kind == "numeric" else object)
        for spec in card.features
    }
    return pd.DataFrame(data, columns=card.feature_names)
