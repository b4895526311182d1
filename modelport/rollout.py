"""The canary judge's pure logic: checks of a canary against stable, the verdict, the
decision of ``modelport rollout run``, and the objects written where a team looks (the
annotation of the canary Deployment, a Kubernetes Event, the Helm arguments).

No I/O here: measurements come in as :class:`Observations` (``modelport.rollout_io``
reads them from Prometheus), so every rule is unit-tested on plain numbers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["pass", "fail", "insufficient", "skipped"]
Verdict = Literal["pass", "fail", "inconclusive"]
Action = Literal["promote", "abort", "wait"]

# Shares inside ln() are floored here, as in the chart's PSI rules: an empty bin would
# give ln(0).
EPS = 1e-4
ANNOTATION = "modelport.io/rollout"
_WINDOW = re.compile(r"^[1-9][0-9]*(s|m|h)$")


class RolloutError(Exception):
    """A rollout cannot proceed; the message names what is wrong (one line)."""


@dataclass(frozen=True)
class Thresholds:
    """What a canary must meet; each check also needs a minimum sample on both sides."""

    window: str = "10m"
    # Error ratio counts 4xx too: a canary rejecting requests stable accepts (a changed
    # feature schema) is as broken for clients as one answering 500.
    max_error_increase: float = 0.01
    min_requests: int = 50
    p99_max_ratio: float = 1.5
    # Loopback p99s are a millisecond: a ratio alone would fail on noise.
    p99_slack_seconds: float = 0.01
    max_psi: float = 0.1
    min_predictions: int = 100
    min_agreement: float = 0.95
    min_mirrored: int = 100
    max_accuracy_drop: float = 0.02
    max_f1_drop: float = 0.03
    max_rmse_increase: float = 0.1  # relative: 0.1 = canary RMSE at most 10 % above stable
    min_feedback: int = 50

    def __post_init__(self) -> None:
        if not _WINDOW.match(self.window):
            raise RolloutError(f"window: {self.window!r} is not a duration like 30s, 10m or 1h")
        for name, value in asdict(self).items():
            if name != "window" and (not math.isfinite(value) or value < 0):
                raise RolloutError(f"{name}: must be a number >= 0, got {value!r}")
        if self.min_agreement > 1:
            raise RolloutError(f"min_agreement: must be within 0..1, got {self.min_agreement}")

    @property
    def window_seconds(self) -> int:
        return int(self.window[:-1]) * {"s": 1, "m": 60, "h": 3600}[self.window[-1]]


@dataclass
class VariantData:
    """One variant's counts over the window (sums over its pods and workers)."""

    version: str | None = None
    requests: float = 0.0
    errors: float = 0.0
    # Cumulative histogram buckets: upper bound (inf for +Inf) -> count.
    latency_buckets: dict[float, float] = field(default_factory=dict)
    # Classifiers: class -> count. Regressors: cumulative prediction_value buckets.
    predictions: dict[str, float] = field(default_factory=dict)


@dataclass
class Feedback:
    """Feedback labels for one model version (by the version that predicted, whichever
    pod received the feedback). Classifiers: (predicted, actual) -> count; regressors:
    observations and error sums."""

    confusion: dict[tuple[str, str], float] = field(default_factory=dict)
    observations: float = 0.0
    squared_error: float = 0.0
    absolute_error: float = 0.0


@dataclass
class Observations:
    model: str
    task: str  # classification | regression
    stable: VariantData
    canary: VariantData
    # Shadow comparisons made by the stable pods: None when nothing was mirrored.
    agree: float | None = None
    disagree: float | None = None
    mirrored: dict[str, float] = field(default_factory=dict)  # outcome -> count
    shadow: bool | None = None  # mirroring switched on (None: judged from the counts)
    # The canary takes mirrored traffic only: no client sees its predictions, so no
    # feedback can name its version.
    shadow_only: bool = False
    feedback_stable: Feedback = field(default_factory=Feedback)
    feedback_canary: Feedback = field(default_factory=Feedback)


@dataclass
class CheckResult:
    name: str
    status: Status
    canary: float | None  # the canary's value (or the comparison's, e.g. PSI)
    stable: float | None
    threshold: str  # the rule, readable: "<= stable + 0.01"
    samples: float  # the smaller side's sample, what min_samples applies to
    min_samples: int
    detail: str = ""


@dataclass
class Report:
    model: str
    stable_version: str | None
    canary_version: str | None
    window: str
    checks: list[CheckResult]
    at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    @property
    def verdict(self) -> Verdict:
        return verdict(self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "stable_version": self.stable_version,
            "canary_version": self.canary_version,
            "window": self.window,
            "at": self.at,
            "verdict": self.verdict,
            "checks": [asdict(c) for c in self.checks],
        }


# -- statistics -------------------------------------------------------------------------


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus's ``histogram_quantile`` on cumulative buckets (linear within a bucket;
    in the +Inf bucket, the highest finite bound)."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def bucket_counts(cumulative: Mapping[str, float]) -> dict[str, float]:
    """Cumulative histogram buckets (``le`` -> count) as per-bin counts."""
    ordered = sorted(cumulative.items(), key=lambda kv: float(kv[0]))
    counts, prev = {}, 0.0
    for le, count in ordered:
        counts[le] = max(count - prev, 0.0)
        prev = count
    return counts


def rebin(cumulative: Mapping[str, float], bounds: list[str]) -> dict[str, float]:
    """Cumulative buckets (``le`` -> count) re-cut at other upper bounds, as per-bin counts.

    A regressor's buckets are its training target's deciles, so two versions trained on
    different data bin differently; the canary is re-cut at stable's bounds. Within a
    bucket the count grows linearly (as ``histogram_quantile`` assumes); the open-ended
    lowest bucket cannot be split and counts at its upper bound."""
    points = sorted((float(le), count) for le, count in cumulative.items())
    finite = [(b, c) for b, c in points if not math.isinf(b)]
    total = points[-1][1] if points and math.isinf(points[-1][0]) else None

    def at(x: float) -> float:
        if math.isinf(x):
            return total if total is not None else (finite[-1][1] if finite else 0.0)
        below = [(b, c) for b, c in finite if b <= x]
        above = [(b, c) for b, c in finite if b > x]
        if not below:
            return above[0][1] if above else 0.0
        if not above:
            return below[-1][1]
        (b0, c0), (b1, c1) = below[-1], above[0]
        return c0 + (c1 - c0) * (x - b0) / (b1 - b0)

    ordered = sorted(bounds, key=float)
    return bucket_counts({le: at(float(le)) for le in ordered})


def psi(reference: Mapping[str, float], live: Mapping[str, float]) -> float:
    """Population stability index of ``live`` against ``reference`` (counts per bin):
    sum over bins of (live - ref) * ln(live / ref), shares floored at EPS."""
    ref_total, live_total = sum(reference.values()), sum(live.values())
    if ref_total <= 0 or live_total <= 0:
        raise ValueError("psi needs counts on both sides")
    value = 0.0
    for key in set(reference) | set(live):
        r = max(reference.get(key, 0.0) / ref_total, EPS)
        v = max(live.get(key, 0.0) / live_total, EPS)
        value += (v - r) * math.log(v / r)
    return value if value > 1e-12 else 0.0  # identical shares: 0, not rounding noise


def accuracy(confusion: Mapping[tuple[str, str], float]) -> float | None:
    total = sum(confusion.values())
    if total <= 0:
        return None
    return sum(n for (p, a), n in confusion.items() if p == a) / total


def macro_f1(confusion: Mapping[tuple[str, str], float]) -> float | None:
    """Mean over the classes seen (predicted or actual) of 2PR / (P + R)."""
    classes = {p for p, _ in confusion} | {a for _, a in confusion}
    if not classes or sum(confusion.values()) <= 0:
        return None
    scores = []
    for c in sorted(classes):
        tp = confusion.get((c, c), 0.0)
        predicted = sum(n for (p, _), n in confusion.items() if p == c)
        actual = sum(n for (_, a), n in confusion.items() if a == c)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores)


# -- checks -----------------------------------------------------------------------------


def _enough(name: str, samples: float, minimum: int, rule: str) -> CheckResult | None:
    if samples < minimum:
        return CheckResult(
            name, "insufficient", None, None, rule, samples, minimum, "not enough data yet"
        )
    return None


def check_error_ratio(obs: Observations, t: Thresholds) -> CheckResult:
    rule = f"<= stable + {t.max_error_increase:g}"
    samples = min(obs.stable.requests, obs.canary.requests)
    short = _enough("error_ratio", samples, t.min_requests, rule)
    if short:
        return short
    s = obs.stable.errors / obs.stable.requests
    c = obs.canary.errors / obs.canary.requests
    ok = c <= s + t.max_error_increase
    return CheckResult("error_ratio", "pass" if ok else "fail", c, s, rule, samples, t.min_requests)


def check_latency(obs: Observations, t: Thresholds) -> CheckResult:
    rule = f"<= stable x {t.p99_max_ratio:g} + {t.p99_slack_seconds:g}s"
    inf = math.inf
    samples = min(
        obs.stable.latency_buckets.get(inf, 0.0), obs.canary.latency_buckets.get(inf, 0.0)
    )
    short = _enough("p99_latency", samples, t.min_requests, rule)
    if short:
        return short
    s = quantile(0.99, obs.stable.latency_buckets)
    c = quantile(0.99, obs.canary.latency_buckets)
    assert s is not None and c is not None  # both have observations
    ok = c <= s * t.p99_max_ratio + t.p99_slack_seconds
    return CheckResult("p99_latency", "pass" if ok else "fail", c, s, rule, samples, t.min_requests)


def check_prediction_psi(obs: Observations, t: Thresholds) -> CheckResult:
    """Divergence of the canary's predictions from stable's: predicted classes, or the
    regressor's prediction-value bins (the training target's deciles)."""
    rule = f"PSI <= {t.max_psi:g}"
    if obs.task == "regression":
        stable = bucket_counts(obs.stable.predictions)
        canary = rebin(obs.canary.predictions, list(obs.stable.predictions))
    else:
        stable, canary = obs.stable.predictions, obs.canary.predictions
    samples = min(sum(stable.values()), sum(canary.values()))
    short = _enough("prediction_psi", samples, t.min_predictions, rule)
    if short:
        return short
    value = psi(stable, canary)
    c_total, s_total = sum(canary.values()), sum(stable.values())
    shares = ", ".join(
        f"{k}: {canary.get(k, 0) / c_total:.2f} vs {stable.get(k, 0) / s_total:.2f}"
        for k in sorted(set(stable) | set(canary))
    )
    return CheckResult(
        "prediction_psi",
        "pass" if value <= t.max_psi else "fail",
        value,
        0.0,
        rule,
        samples,
        t.min_predictions,
        f"canary vs stable shares {shares}" if obs.task != "regression" else "",
    )


def check_agreement(obs: Observations, t: Thresholds) -> CheckResult:
    rule = f">= {t.min_agreement:g}"
    agree, disagree = obs.agree or 0.0, obs.disagree or 0.0
    # Without the release's values, "was this canary shadowed" is read from the comparisons
    # labelled with its version; the mirrored outcomes have no version (an earlier canary's
    # would count).
    expected = obs.shadow if obs.shadow is not None else agree + disagree > 0
    if not expected:
        return CheckResult(
            "shadow_agreement", "skipped", None, None, rule, 0, t.min_mirrored, "no shadow traffic"
        )
    short = _enough("shadow_agreement", agree + disagree, t.min_mirrored, rule)
    if short:
        return short
    rate = agree / (agree + disagree)
    detail = ", ".join(f"{k} {v:.0f}" for k, v in sorted(obs.mirrored.items()) if v)
    return CheckResult(
        "shadow_agreement",
        "pass" if rate >= t.min_agreement else "fail",
        rate,
        None,
        rule,
        agree + disagree,
        t.min_mirrored,
        f"mirrored: {detail}" if detail else "",
    )


def _same_version(obs: Observations) -> bool:
    return obs.stable.version is not None and obs.stable.version == obs.canary.version


def check_feedback(obs: Observations, t: Thresholds) -> list[CheckResult]:
    """Online quality from feedback labels, canary version against stable version."""
    fs, fc = obs.feedback_stable, obs.feedback_canary
    if obs.task == "regression":
        names = [("online_rmse", f"<= stable x {1 + t.max_rmse_increase:g}")]
        counts = (fs.observations, fc.observations)
    else:
        names = [
            ("online_accuracy", f">= stable - {t.max_accuracy_drop:g}"),
            ("online_f1", f">= stable - {t.max_f1_drop:g}"),
        ]
        counts = (sum(fs.confusion.values()), sum(fc.confusion.values()))
    if _same_version(obs) or obs.shadow_only:
        why = "shadow-only canary" if obs.shadow_only else "same model version"
        return [CheckResult(n, "skipped", None, None, r, 0, t.min_feedback, why) for n, r in names]
    samples = min(counts)
    if samples < t.min_feedback:
        return [
            CheckResult(
                n, "insufficient", None, None, r, samples, t.min_feedback, "not enough feedback"
            )
            for n, r in names
        ]
    if obs.task == "regression":
        s = math.sqrt(fs.squared_error / fs.observations)
        c = math.sqrt(fc.squared_error / fc.observations)
        ok = c <= s * (1 + t.max_rmse_increase)
        mae = (
            f"MAE canary {fc.absolute_error / fc.observations:.4g}, "
            f"stable {fs.absolute_error / fs.observations:.4g}"
        )
        return [
            CheckResult(
                "online_rmse",
                "pass" if ok else "fail",
                c,
                s,
                names[0][1],
                samples,
                t.min_feedback,
                mae,
            )
        ]
    results = []
    for (name, rule), fn, drop in (
        (names[0], accuracy, t.max_accuracy_drop),
        (names[1], macro_f1, t.max_f1_drop),
    ):
        base, value = fn(fs.confusion), fn(fc.confusion)
        assert base is not None and value is not None  # both sides have feedback
        ok = value >= base - drop
        results.append(
            CheckResult(name, "pass" if ok else "fail", value, base, rule, samples, t.min_feedback)
        )
    return results


def analyze(obs: Observations, t: Thresholds) -> Report:
    checks = [
        check_error_ratio(obs, t),
        check_latency(obs, t),
        check_prediction_psi(obs, t),
        check_agreement(obs, t),
        *check_feedback(obs, t),
    ]
    return Report(obs.model, obs.stable.version, obs.canary.version, t.window, checks)


def verdict(checks: list[CheckResult]) -> Verdict:
    """fail if any check fails; pass if none lacks data and at least one passed."""
    statuses = [c.status for c in checks]
    if "fail" in statuses:
        return "fail"
    if "insufficient" in statuses or "pass" not in statuses:
        return "inconclusive"
    return "pass"


def decide(
    result: Verdict,
    elapsed: float,
    duration: float,
    deadline: float,
    on_timeout: Literal["abort", "promote"] = "abort",
) -> Action:
    """What ``rollout run`` does after an analysis: a failed check aborts at once; a pass
    promotes once ``duration`` has passed; missing data waits until ``deadline``, then
    ``on_timeout`` (abort unless told otherwise)."""
    if result == "fail":
        return "abort"
    if elapsed < duration:
        return "wait"
    if result == "pass":
        return "promote"
    return on_timeout if elapsed >= deadline else "wait"


# -- what is written --------------------------------------------------------------------


def summary(report: Report) -> str:
    """One line: the verdict and each check's status."""
    parts = []
    for c in report.checks:
        value = "" if c.canary is None else f" {c.canary:.4g}"
        parts.append(f"{c.name} {c.status}{value}")
    return (
        f"canary {report.model}:{report.canary_version} vs stable {report.stable_version} "
        f"over {report.window}: {report.verdict} ({'; '.join(parts)})"
    )


def annotation_patch(report: Report, action: str | None = None) -> dict[str, Any]:
    """Merge patch for the canary Deployment: the verdict and its evidence as JSON."""
    evidence = report.to_dict()
    if action:
        evidence["action"] = action
    return {
        "metadata": {
            "annotations": {
                f"{ANNOTATION}-verdict": report.verdict,
                f"{ANNOTATION}-evidence": json.dumps(evidence, separators=(",", ":")),
            }
        }
    }


_REASONS = {
    "pass": ("CanaryPassed", "Normal"),
    "fail": ("CanaryFailed", "Warning"),
    "inconclusive": ("CanaryInconclusive", "Normal"),
    "promote": ("CanaryPromoted", "Normal"),
    "abort": ("CanaryAborted", "Warning"),
}


def event(
    report: Report, deployment: str, namespace: str, action: str | None = None
) -> dict[str, Any]:
    """A core/v1 Event on the canary Deployment (``kubectl create -f -``)."""
    reason, kind = _REASONS[action or report.verdict]
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    message = summary(report)
    if action:
        message = f"{action}: {message}"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            # Kubernetes names events <object>.<unique hex>.
            "name": f"{deployment}.{int(now.timestamp() * 1e9):x}",
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": deployment,
            "namespace": namespace,
        },
        "reason": reason,
        "type": kind,
        "message": message[:1024],
        "source": {"component": "modelport-rollout"},
        "reportingComponent": "modelport-rollout",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


# -- Helm, the only actuator ------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    chart: str

    def upgrade(self, sets: Mapping[str, str | bool | float]) -> list[str]:
        """``helm upgrade --reuse-values`` with these values: what the user set before
        stays, so Helm's record is the truth about what runs. Strings go as strings
        (a version "10" stays text), the rest as JSON (``--set`` keeps 0.5 a string)."""
        args = [
            "upgrade",
            self.name,
            self.chart,
            "--namespace",
            self.namespace,
            "--reuse-values",
            "--wait",
        ]
        for key, value in sets.items():
            if isinstance(value, str):
                args += ["--set-string", f"{key}={value}"]
            else:
                args += ["--set-json", f"{key}={json.dumps(value)}"]
        return args


def start_values(
    version: str,
    image_tag: str | None = None,
    shadow_fraction: float | None = None,
    shadow_only: bool = False,
) -> dict[str, str | bool | float]:
    """Canary on with VERSION; mirroring on with a fraction or shadow-only (whose fraction
    is the release's canary.shadow.fraction unless given). Every flag is set either way, so
    --reuse-values never keeps an earlier canary's mirroring."""
    if shadow_fraction is not None and not 0 < shadow_fraction <= 1:
        raise RolloutError(f"--shadow: fraction must be within (0, 1], got {shadow_fraction}")
    sets: dict[str, str | bool | float] = {"canary.enabled": True, "canary.model.version": version}
    if image_tag:
        sets["canary.image.tag"] = image_tag
    sets["canary.shadow.enabled"] = shadow_fraction is not None or shadow_only
    sets["canary.shadow.only"] = shadow_only
    if shadow_fraction is not None:
        sets["canary.shadow.fraction"] = shadow_fraction
    return sets


def promote_values(values: Mapping[str, Any]) -> dict[str, str | bool | float]:
    """Stable takes the canary's model version and image; the canary goes away."""
    canary = values.get("canary") or {}
    if not canary.get("enabled"):
        raise RolloutError("no canary is running in this release (canary.enabled is false)")
    version = (canary.get("model") or {}).get("version")
    if not version:
        raise RolloutError("the canary has no canary.model.version to promote")
    sets: dict[str, str | bool | float] = {"model.version": str(version)}
    image = canary.get("image") or {}
    if image.get("digest"):
        sets["image.digest"] = str(image["digest"])
    elif image.get("tag"):
        sets["image.tag"] = str(image["tag"])
    return sets | abort_values()


def abort_values() -> dict[str, str | bool | float]:
    return {"canary.enabled": False, "canary.shadow.enabled": False, "canary.shadow.only": False}


def fullname(release: str) -> str:
    """The chart's resource name for a release (without fullnameOverride)."""
    return release if "modelport" in release else f"{release}-modelport"
