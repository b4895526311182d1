from __future__ import annotations

import pytest

from training.gate import check_minimums, compare_with_production

pytestmark = pytest.mark.unit


def test_minimums_only_apply_to_metrics_the_task_has() -> None:
    assert check_minimums({"r2": 0.5}, {"accuracy": 0.9, "r2": 0.4}) == []
    failures = check_minimums({"accuracy": 0.8, "roc_auc": 0.99}, {"accuracy": 0.9})
    assert failures == ["test accuracy 0.8000 is below the minimum 0.9000"]


def test_lower_is_better_metrics_are_maxima() -> None:
    assert check_minimums({"rmse": 60.0}, {"rmse": 50.0}) == [
        "test rmse 60.0000 is above the maximum 50.0000"
    ]


def test_production_comparison_uses_tolerance() -> None:
    assert compare_with_production("accuracy", 0.95, 0.955, 0.01, "m:1") is None
    msg = compare_with_production("accuracy", 0.90, 0.95, 0.01, "m:1")
    assert msg is not None and "worse than production m:1" in msg and "0.0500" in msg
    assert compare_with_production("rmse", 10.0, 12.0, 0.0, "m:1") is None
    assert compare_with_production("rmse", 12.0, 10.0, 0.5, "m:1") is not None
