"""The canary judge's pure logic on plain numbers: statistics (checked against the values
Prometheus/promtool compute for the same data in tests/chart/promtool/canary.test.yaml),
each check's pass/fail/not-enough-data, the verdict, `run`'s decision, and the objects the
judge writes (the Event validated against the Kubernetes schema)."""

from __future__ import annotations

import json
import math

import pytest

from modelport import rollout
from modelport.rollout import (
    Feedback,
    Observations,
    RolloutError,
    Thresholds,
    VariantData,
    analyze,
    decide,
    verdict,
)
from modelport.rollout_cli import thresholds

pytestmark = pytest.mark.unit

INF = math.inf
T = Thresholds()


def variant(
    version: str,
    requests: float = 1000,
    errors: float = 0,
    fast: bool = True,
    classes: tuple[float, float] = (400, 600),
) -> VariantData:
    # 99 % of requests under 5 ms, the rest under 10 ms (fast); or all within 0.1-0.25 s.
    buckets = (
        {0.005: requests * 0.99, 0.01: requests, INF: requests}
        if fast
        else {0.1: 0.0, 0.25: requests, INF: requests}
    )
    return VariantData(version, requests, errors, buckets, {"0": classes[0], "1": classes[1]})


def confusion(correct: float, wrong: float) -> dict[tuple[str, str], float]:
    half_c, half_w = correct / 2, wrong / 2
    return {("0", "0"): half_c, ("1", "1"): half_c, ("0", "1"): half_w, ("1", "0"): half_w}


def observations(**kw: object) -> Observations:
    obs = Observations(
        "breast-cancer",
        "classification",
        variant("v1"),
        variant("v2"),
        feedback_stable=Feedback(confusion(95, 5)),
        feedback_canary=Feedback(confusion(95, 5)),
    )
    for key, value in kw.items():
        setattr(obs, key, value)
    return obs


def by_name(report: rollout.Report) -> dict[str, rollout.CheckResult]:
    return {c.name: c for c in report.checks}


# -- statistics --------------------------------------------------------------------------


def test_quantile_matches_prometheus() -> None:
    # The same buckets give these p99s in promtool (canary.test.yaml).
    assert rollout.quantile(0.99, {0.01: 60, INF: 60}) == pytest.approx(0.0099)
    assert rollout.quantile(0.99, {0.1: 0, 0.25: 60, INF: 60}) == pytest.approx(0.2485)
    assert rollout.quantile(0.99, {0.1: 10, INF: 100}) == 0.1  # in +Inf: highest bound
    assert rollout.quantile(0.99, {0.1: 0, INF: 0}) is None
    assert rollout.quantile(0.99, {0.1: 5}) is None  # no +Inf bucket


def test_psi_matches_prometheus() -> None:
    assert rollout.psi({"0": 24, "1": 36}, {"0": 6, "1": 54}) == pytest.approx(0.5375278407684165)
    assert rollout.psi({"a": 1, "b": 1}, {"a": 5, "b": 5}) == 0
    # A class only one side predicts counts at the floor share, not as an error.
    assert rollout.psi({"a": 10}, {"a": 5, "b": 5}) > 1
    with pytest.raises(ValueError, match="both sides"):
        rollout.psi({}, {"a": 1})


def test_bucket_counts_from_cumulative() -> None:
    assert rollout.bucket_counts({"100": 30, "+Inf": 60, "200": 50}) == {
        "100": 30,
        "200": 20,
        "+Inf": 10,
    }


def test_accuracy_and_macro_f1() -> None:
    # Pairs (1,1) (0,0) (1,1) (1,0), as in tests/service/test_prometheus.py.
    pairs = {("1", "1"): 2, ("0", "0"): 1, ("1", "0"): 1}
    assert rollout.accuracy(pairs) == 0.75
    assert rollout.macro_f1(pairs) == pytest.approx((0.8 + 2 / 3) / 2)
    assert rollout.accuracy({}) is None and rollout.macro_f1({}) is None


# -- checks ------------------------------------------------------------------------------


def test_good_canary_passes_every_check() -> None:
    report = analyze(observations(), T)
    statuses = {c.name: c.status for c in report.checks}
    assert statuses == {
        "error_ratio": "pass",
        "p99_latency": "pass",
        "prediction_psi": "pass",
        "shadow_agreement": "skipped",
        "online_accuracy": "pass",
        "online_f1": "pass",
    }
    assert report.verdict == "pass"


def test_error_ratio_against_stable() -> None:
    obs = observations(stable=variant("v1", errors=20), canary=variant("v2", errors=29))
    check = by_name(analyze(obs, T))["error_ratio"]
    assert (check.status, check.canary, check.stable) == ("pass", 0.029, 0.02)
    obs.canary = variant("v2", errors=31)
    assert by_name(analyze(obs, T))["error_ratio"].status == "fail"


def test_p99_against_stable() -> None:
    report = analyze(observations(canary=variant("v2", fast=False)), T)
    check = by_name(report)["p99_latency"]
    assert check.status == "fail" and check.canary == pytest.approx(0.2485)
    assert report.verdict == "fail"


def test_prediction_psi_fails_on_a_shifted_distribution() -> None:
    report = analyze(observations(canary=variant("v2", classes=(100, 900))), T)
    check = by_name(report)["prediction_psi"]
    assert check.status == "fail"
    assert check.canary == pytest.approx(0.5375278407684165)
    assert "0: 0.10 vs 0.40" in check.detail


def test_prediction_psi_of_a_regressor_over_value_bins() -> None:
    stable = VariantData("d1", 500, 0, {0.01: 500, INF: 500}, {"100": 250, "200": 450, "+Inf": 500})
    same = VariantData("d2", 500, 0, {0.01: 500, INF: 500}, {"100": 250, "200": 450, "+Inf": 500})
    shifted = VariantData("d2", 500, 0, {0.01: 500, INF: 500}, {"100": 25, "200": 100, "+Inf": 500})
    obs = Observations("diabetes", "regression", stable, same)
    assert by_name(analyze(obs, T))["prediction_psi"].status == "pass"
    obs.canary = shifted
    assert by_name(analyze(obs, T))["prediction_psi"].status == "fail"


def test_regressor_versions_binned_differently_are_compared_on_stables_bins() -> None:
    """Each version's buckets are its own training deciles: the canary is re-cut at
    stable's bounds (linear within a bucket), so nearly equal bins compare as equal."""
    cut = rollout.rebin({"90": 200, "210": 440, "+Inf": 500}, ["100", "200", "+Inf"])
    # Cumulative 200 + 240 * 10/120 = 220 at 100, 200 + 240 * 110/120 = 420 at 200.
    assert cut == pytest.approx({"100": 220.0, "200": 200.0, "+Inf": 80.0})
    assert rollout.rebin({"100": 5, "+Inf": 9}, ["50", "+Inf"]) == {"50": 5, "+Inf": 4}
    stable = VariantData("d1", 500, 0, {0.01: 500, INF: 500}, {"100": 250, "200": 450, "+Inf": 500})
    close = VariantData("d2", 500, 0, {0.01: 500, INF: 500}, {"101": 252, "199": 449, "+Inf": 500})
    check = by_name(analyze(Observations("diabetes", "regression", stable, close), T))
    assert check["prediction_psi"].status == "pass"
    assert (check["prediction_psi"].canary or 0) < 0.001
    # Without re-cutting, the two bin sets share only +Inf: a PSI near 10.
    apart = rollout.psi(
        rollout.bucket_counts(stable.predictions), rollout.bucket_counts(close.predictions)
    )
    assert apart > 5


def test_shadow_only_canary_skips_feedback() -> None:
    """No client sees a shadow-only canary's predictions, so feedback never names its
    version: the feedback checks are skipped, not left waiting for data."""
    obs = observations(agree=200.0, disagree=0.0, shadow=True, shadow_only=True)
    obs.feedback_canary = Feedback()
    report = analyze(obs, T)
    checks = by_name(report)
    assert checks["online_accuracy"].status == "skipped"
    assert checks["online_accuracy"].detail == "shadow-only canary"
    assert checks["shadow_agreement"].status == "pass"
    assert report.verdict == "pass"


def test_agreement_expected_from_this_canary_versions_comparisons() -> None:
    """Without the release's values, mirrored outcomes (no version label: an earlier
    canary's count too) do not make this canary's agreement check expected."""
    obs = observations(mirrored={"compared": 500.0})
    assert by_name(analyze(obs, T))["shadow_agreement"].status == "skipped"
    obs = observations(agree=3.0, disagree=0.0)
    assert by_name(analyze(obs, T))["shadow_agreement"].status == "insufficient"


def test_not_enough_data_neither_passes_nor_fails() -> None:
    obs = observations(canary=variant("v2", requests=20, classes=(10, 10)))
    obs.feedback_canary = Feedback(confusion(10, 0))
    report = analyze(obs, T)
    statuses = {c.name: c.status for c in report.checks}
    assert statuses["error_ratio"] == "insufficient"
    assert statuses["p99_latency"] == "insufficient"
    assert statuses["prediction_psi"] == "insufficient"
    assert statuses["online_accuracy"] == "insufficient"
    assert by_name(report)["error_ratio"].samples == 20
    assert report.verdict == "inconclusive"


def test_agreement_when_shadowing() -> None:
    obs = observations(agree=190.0, disagree=10.0, mirrored={"compared": 200.0, "dropped": 3.0})
    check = by_name(analyze(obs, T))["shadow_agreement"]
    assert (check.status, check.canary) == ("pass", 0.95)
    assert "dropped 3" in check.detail
    obs.agree = 150.0
    assert by_name(analyze(obs, T))["shadow_agreement"].status == "fail"
    # Shadow on but nothing compared yet: not enough data, not skipped.
    obs = observations(shadow=True)
    assert by_name(analyze(obs, T))["shadow_agreement"].status == "insufficient"


def test_feedback_checks() -> None:
    obs = observations(feedback_canary=Feedback(confusion(80, 20)))
    checks = by_name(analyze(obs, T))
    assert checks["online_accuracy"].status == "fail"
    assert (checks["online_accuracy"].canary, checks["online_accuracy"].stable) == (0.8, 0.95)
    assert checks["online_f1"].status == "fail"
    # One version on both sides: feedback cannot tell them apart.
    same = observations(canary=variant("v1"))
    assert by_name(analyze(same, T))["online_accuracy"].status == "skipped"


def test_online_rmse_of_a_regressor() -> None:
    base = VariantData("d1", 500, 0, {0.01: 500, INF: 500}, {"100": 250, "+Inf": 500})
    obs = Observations(
        "diabetes",
        "regression",
        base,
        VariantData("d2", 500, 0, {0.01: 500, INF: 500}, {"100": 250, "+Inf": 500}),
        feedback_stable=Feedback(
            observations=100, squared_error=100 * 50.0**2, absolute_error=4000
        ),
        feedback_canary=Feedback(
            observations=100, squared_error=100 * 54.0**2, absolute_error=4300
        ),
    )
    check = by_name(analyze(obs, T))["online_rmse"]
    assert (check.status, check.canary, check.stable) == ("pass", 54.0, 50.0)
    assert "MAE canary 43" in check.detail
    obs.feedback_canary.squared_error = 100 * 56.0**2
    assert by_name(analyze(obs, T))["online_rmse"].status == "fail"


# -- verdict and run ---------------------------------------------------------------------


def result(status: str) -> rollout.CheckResult:
    return rollout.CheckResult("x", status, None, None, "", 0, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["pass", "pass", "skipped"], "pass"),
        (["pass", "fail", "insufficient"], "fail"),
        (["pass", "insufficient"], "inconclusive"),
        (["skipped", "skipped"], "inconclusive"),
    ],
)
def test_verdict(statuses: list[str], expected: str) -> None:
    assert verdict([result(s) for s in statuses]) == expected


@pytest.mark.parametrize(
    ("outcome", "elapsed", "on_timeout", "action"),
    [
        ("fail", 10, "abort", "abort"),  # a failed check aborts at once
        ("pass", 10, "abort", "wait"),  # passing, but the duration has not passed
        ("pass", 600, "abort", "promote"),
        ("inconclusive", 600, "abort", "wait"),  # waits for data up to the deadline
        ("inconclusive", 1200, "abort", "abort"),
        ("inconclusive", 1200, "promote", "promote"),  # when told otherwise
    ],
)
def test_run_decision(outcome: str, elapsed: float, on_timeout: str, action: str) -> None:
    assert decide(outcome, elapsed, 600, 1200, on_timeout) == action  # type: ignore[arg-type]


# -- thresholds --------------------------------------------------------------------------


def test_thresholds_from_values_then_flags() -> None:
    values = {"canary": {"analysis": {"window": "5m", "maxPsi": 0.2, "minRequests": 10}}}
    t = thresholds(values, None, ["min_requests=30", "maxErrorIncrease=0.05"])
    assert (t.window, t.max_psi, t.min_requests, t.max_error_increase) == ("5m", 0.2, 30, 0.05)
    assert thresholds(values, "30s", []).window_seconds == 30


@pytest.mark.parametrize(
    ("window", "overrides", "message"),
    [
        ("10 minutes", [], "window: '10 minutes' is not a duration"),
        (None, ["max_psi"], "expected KEY=VALUE"),
        (None, ["nope=1"], "KEY one of window, max_error_increase"),
        (None, ["max_psi=high"], "threshold max_psi: 'high' is not a number"),
        (None, ["max_psi=-1"], "max_psi: must be a number >= 0"),
        (None, ["min_agreement=2"], "min_agreement: must be within 0..1"),
    ],
)
def test_bad_thresholds_named(window: str | None, overrides: list[str], message: str) -> None:
    with pytest.raises(RolloutError, match=message):
        thresholds({}, window, overrides)


# -- what is written ---------------------------------------------------------------------


def test_annotation_carries_verdict_and_evidence() -> None:
    report = analyze(observations(canary=variant("v2", errors=100)), T)
    patch = rollout.annotation_patch(report, "abort")
    notes = patch["metadata"]["annotations"]
    assert notes["modelport.io/rollout-verdict"] == "fail"
    evidence = json.loads(notes["modelport.io/rollout-evidence"])
    assert evidence["action"] == "abort"
    assert evidence["canary_version"] == "v2"
    errors = next(c for c in evidence["checks"] if c["name"] == "error_ratio")
    assert (errors["status"], errors["canary"]) == ("fail", 0.1)


def test_event_is_a_valid_kubernetes_event() -> None:
    import kubernetes_validate

    report = analyze(observations(canary=variant("v2", errors=100)), T)
    event = rollout.event(report, "modelport-canary", "models", "abort")
    kubernetes_validate.validate(event, "1.31", strict=True)
    assert (event["reason"], event["type"]) == ("CanaryAborted", "Warning")
    assert event["involvedObject"]["name"] == "modelport-canary"
    assert event["metadata"]["name"].startswith("modelport-canary.")
    assert "error_ratio fail 0.1" in event["message"]
    passed = rollout.event(analyze(observations(), T), "modelport-canary", "models")
    assert (passed["reason"], passed["type"]) == ("CanaryPassed", "Normal")


def test_helm_arguments() -> None:
    release = rollout.Release("prod", "models", "helm/modelport")
    args = release.upgrade(rollout.start_values("10", "1.1.0", 0.25))
    assert args[:7] == [
        "upgrade",
        "prod",
        "helm/modelport",
        "--namespace",
        "models",
        "--reuse-values",
        "--wait",
    ]
    # A version made of digits stays a string; the fraction goes as a number.
    assert "canary.model.version=10" in args[args.index("--set-string") + 1]
    assert args[-2:] == ["--set-json", "canary.shadow.fraction=0.25"]
    with pytest.raises(RolloutError, match="no canary is running"):
        rollout.promote_values({"canary": {"enabled": False}})
    with pytest.raises(RolloutError, match=r"--shadow: fraction must be within \(0, 1\]"):
        rollout.start_values("v2", shadow_fraction=1.5)
    only = rollout.start_values("v2", shadow_only=True)
    assert (only["canary.shadow.enabled"], only["canary.shadow.only"]) == (True, True)
    assert "canary.shadow.fraction" not in only  # the release's own fraction stays
    plain = rollout.start_values("v2")
    assert (plain["canary.shadow.enabled"], plain["canary.shadow.only"]) == (False, False)
    assert rollout.abort_values()["canary.shadow.only"] is False
    assert rollout.fullname("prod") == "prod-modelport"
    assert rollout.fullname("modelport") == "modelport"
