"""``modelport explain``: explain a CSV file offline and write the attributions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from modelport.explain import Explanation
    from modelport.metadata import ModelCard


class ExplainInputError(ValueError):
    """A model or file that cannot be explained; one line naming the file, line, column."""


@dataclass(frozen=True)
class Result:
    tag: str
    explanation: Explanation
    out: Path
    ignored: list[str]  # CSV columns that are not model features

    def top(self, n: int = 10) -> list[tuple[str, float, float]]:
        """(feature, mean |attribution|, mean attribution), largest first."""
        a = self.explanation.attributions.reshape(-1, len(self.explanation.feature_names))
        rows = zip(self.explanation.feature_names, np.abs(a).mean(0), a.mean(0), strict=True)
        return sorted(((f, float(m), float(s)) for f, m, s in rows), key=lambda r: -r[1])[:n]


def _line(position: int) -> int:
    return position + 2  # one header line, rows from 1


def model_input(frame: pd.DataFrame, card: ModelCard, path: Path) -> pd.DataFrame | np.ndarray:
    """The predictor's input from a CSV frame, checked against the card's features."""
    import pandas as pd

    missing = [n for n in card.feature_names if n not in frame.columns]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ExplainInputError(f"{path}: missing column(s) {shown}{more}")
    cols: dict[str, Any] = {}
    for spec in card.features:
        col = frame[spec.name]
        absent = col.isna().to_numpy()
        if absent.any():
            line = _line(int(np.argmax(absent)))
            raise ExplainInputError(f"{path} line {line}: column {spec.name!r}: missing value")
        if spec.kind != "numeric":
            cols[spec.name] = col.astype(str)
            continue
        numbers = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(numbers)
        if bad.any():
            i = int(np.argmax(bad))
            raise ExplainInputError(
                f"{path} line {_line(i)}: column {spec.name!r}: "
                f"expected a finite number, got {col.iloc[i]!r}"
            )
        cols[spec.name] = numbers
    if all(f.kind == "numeric" for f in card.features):
        return np.column_stack([cols[n] for n in card.feature_names])
    return pd.DataFrame(cols)


def attributions_frame(ex: Explanation) -> pd.DataFrame:
    """One CSV row per explained output: the input line, prediction, class (classifiers),
    value, base value and one ``attribution:<feature>`` column per feature."""
    import pandas as pd

    records = []
    for i, pred in enumerate(ex.predictions):
        for j in range(ex.values.shape[1]):
            rec: dict[str, Any] = {"line": _line(i), "prediction": pred}
            if ex.classes is not None:
                rec["class"] = ex.classes[i][j]
            rec["output"] = ex.output
            rec["value"] = float(ex.values[i, j])
            rec["base_value"] = float(ex.base_values[i, j])
            for name, v in zip(ex.feature_names, ex.attributions[i, j], strict=True):
                rec[f"attribution:{name}"] = float(v)
            records.append(rec)
    return pd.DataFrame.from_records(records)


def read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise ExplainInputError(
            f"{path}: no such file" if not path.exists() else f"{path}: not a file"
        )
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ExplainInputError(f"{path}: file is empty (no header line)") from None
    except pd.errors.ParserError as exc:
        # pandas names the line ("Expected 3 fields in line 7, saw 4").
        raise ExplainInputError(f"{path}: not a well-formed CSV file: {str(exc).strip()}") from None
    except UnicodeDecodeError as exc:
        raise ExplainInputError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    if frame.empty:
        raise ExplainInputError(f"{path}: has a header but no data rows")
    return frame


def explain_csv(tag: str, csv: Path, out: Path | None, all_classes: bool = False) -> Result:
    """Explain every row of ``csv`` with model ``tag``; writes the attributions CSV."""
    from modelport import store
    from modelport.explain import explainer_for

    try:
        model = store.resolve(tag)
        card = store.card_of(model)
    except store.StoreError as exc:
        raise ExplainInputError(str(exc)) from None
    frame = read_csv(csv)
    X = model_input(frame, card, csv)
    predictor = store.predictor_of(model, card)
    # Offline: no time budget, the whole file is explained.
    explainer = explainer_for(predictor, card, budget_seconds=float("inf"))
    ex = explainer.explain(X, all_classes=all_classes, budget_seconds=float("inf"))
    target = out if out is not None else csv.with_name(f"{csv.stem}.attributions.csv")
    attributions_frame(ex).to_csv(target, index=False)
    ignored = [str(c) for c in frame.columns if c not in set(card.feature_names)]
    return Result(str(model.tag), ex, target, ignored)
