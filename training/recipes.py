"""Built-in training recipes on data sets that ship with scikit-learn."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from modelport.metadata import Framework, Task


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    framework: Framework
    task: Task
    target: str
    load: Callable[[], pd.DataFrame]


def _breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame


def _diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    # Unscaled, so clients send values in their natural units (age in years, ...).
    return load_diabetes(as_frame=True, scaled=False).frame


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "breast-cancer",
            "Binary classification (0 = malignant, 1 = benign), scaled logistic regression.",
            "sklearn",
            "classification",
            "target",
            _breast_cancer,
        ),
        Recipe(
            "diabetes",
            "Regression of disease progression after one year, linear regression.",
            "sklearn",
            "regression",
            "target",
            _diabetes,
        ),
        Recipe(
            "breast-cancer-keras",
            "The breast-cancer task with a Keras MLP (Dense/ReLU -> sigmoid), early stopping.",
            "keras",
            "classification",
            "target",
            _breast_cancer,
        ),
    )
}
