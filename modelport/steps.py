"""Pipeline steps stored inside models (so they must stay importable at serving)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from modelport.features import fill_value, prepare_frame
from modelport.metadata import FeatureSpec


class RawFeatures(TransformerMixin, BaseEstimator):
    """:func:`~modelport.features.prepare_frame` as the first pipeline step, with the
    imputation values of ``impute_features`` learnt from the training split.

    The fitted ``specs_`` are what the model card records, so the card and the
    stored pipeline hold the same rules.
    """

    def __init__(
        self,
        specs: list[FeatureSpec] | None = None,
        strategy: str = "median",
        impute_features: tuple[str, ...] = (),
    ) -> None:
        self.specs = specs
        self.strategy = strategy
        self.impute_features = impute_features

    def fit(self, X: pd.DataFrame, y: Any = None) -> RawFeatures:
        specs = []
        for spec in self.specs or []:
            if spec.name in self.impute_features:
                value = fill_value(X[spec.name], spec.kind, self.strategy)
                spec = spec.model_copy(update={"impute": value})
            specs.append(spec)
        self.specs_ = specs
        return self

    def transform(self, X: pd.DataFrame | Any) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(X, columns=[s.name for s in self.specs_])
        # Unknown categories pass here (the one-hot encoder ignores them); the
        # error policy is applied before predicting, where a 4xx can be answered.
        return prepare_frame(X, self.specs_, unknown="ignore").frame
