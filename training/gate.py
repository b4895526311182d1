"""The quality gate: which models may enter the store."""

from __future__ import annotations

from dataclasses import dataclass, field

# Metrics where lower is better; every other metric is higher-is-better.
LOWER_IS_BETTER = frozenset({"mse", "rmse", "mae"})


@dataclass
class GateResult:
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def check_minimums(test_metrics: dict[str, float], minimums: dict[str, float]) -> list[str]:
    """Failures for every configured metric the model has and misses."""
    failures = []
    for name, floor in sorted(minimums.items()):
        if name not in test_metrics:
            continue
        value = test_metrics[name]
        if name in LOWER_IS_BETTER:
            if value > floor:
                failures.append(f"test {name} {value:.4f} is above the maximum {floor:.4f}")
        elif value < floor:
            failures.append(f"test {name} {value:.4f} is below the minimum {floor:.4f}")
    return failures


def compare_with_production(
    metric: str, candidate: float, production: float, tolerance: float, production_tag: str
) -> str | None:
    """A failure message if the candidate is worse than production by more than tolerance."""
    worse_by = production - candidate
    if metric in LOWER_IS_BETTER:
        worse_by = -worse_by
    if worse_by > tolerance:
        return (
            f"test {metric} {candidate:.4f} is worse than production {production_tag} "
            f"({production:.4f}) on the same test split by {worse_by:.4f}, "
            f"more than the tolerance {tolerance:.4f}"
        )
    return None
