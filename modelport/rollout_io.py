"""The judge's edge: Prometheus HTTP queries, and the helm and kubectl calls.

Everything here is thin; what the numbers mean is decided in :mod:`modelport.rollout`.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from modelport.rollout import Feedback, Observations, Report, RolloutError, VariantData

API = 'endpoint=~"predict|infer"'
ERRORS = 'code=~"[45].."'

Sample = tuple[dict[str, str], float]


@dataclass(frozen=True)
class Prometheus:
    url: str
    timeout: float = 10.0

    def query(self, promql: str) -> list[Sample]:
        """An instant query; (labels, value) per series."""
        address = f"{self.url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}
        )
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise RolloutError(f"prometheus at {self.url}: HTTP {exc.code}: {detail}") from None
        except (OSError, ValueError) as exc:
            raise RolloutError(f"prometheus at {self.url}: {exc}") from None
        if body.get("status") != "success":
            raise RolloutError(f"prometheus at {self.url}: {body.get('error', body)}")
        out = []
        for item in body["data"]["result"]:
            value = float(item["value"][1])
            out.append((item["metric"], 0.0 if math.isnan(value) else value))
        return out


def selector(model: str, extra: str = "", **labels: str) -> str:
    """``{model_name="M", <extra>, k="v"...}``; values given as ``~regex`` match a regex."""
    parts = [f'model_name="{model}"']
    for key, value in labels.items():
        op, value = ("=~", value[1:]) if value.startswith("~") else ("=", value)
        parts.append(f'{key}{op}"{value}"')
    if extra:
        parts.append(extra.strip().strip(","))
    return "{" + ",".join(parts) + "}"


def increase(series: str, window: str) -> str:
    """Growth of counters over the window, counting those born inside it from zero:
    ``increase()`` takes a new series' first sample as its baseline, which loses what a
    new pod (or a label child created by its first request or feedback) counted before
    its first scrape. Those have no sample one window ago: their first value is added."""
    grown = f"increase({series}[{window}])"
    born = f"min_over_time({series}[{window}]) unless {series} offset {window}"
    return f"(({grown} + ({born})) or {grown})"


def _le(value: str) -> float:
    return math.inf if value == "+Inf" else float(value)


def _regex(versions: list[str]) -> str:
    return "~" + "|".join(v.replace(".", "\\\\.") for v in versions)


def versions(prom: Prometheus, model: str, extra: str) -> tuple[str | None, dict[str, list[str]]]:
    """The model's task and the versions each variant serves now."""
    found = prom.query(
        f"max by (variant, model_version, task) (modelport_model_info{selector(model, extra)})"
    )
    task: str | None = None
    by_variant: dict[str, list[str]] = {}
    for labels, _ in found:
        task = labels.get("task", task)
        by_variant.setdefault(labels.get("variant", "stable"), []).append(labels["model_version"])
    return task, {k: sorted(v) for k, v in by_variant.items()}


def observe(
    prom: Prometheus,
    model: str,
    window: str,
    extra: str = "",
    stable_version: str | None = None,
    canary_version: str | None = None,
    shadow: bool | None = None,
    shadow_only: bool = False,
) -> Observations:
    """Every count the checks need, over ``window``, from a handful of queries."""
    task, served = versions(prom, model, extra)
    if task is None:
        raise RolloutError(
            f"prometheus has no modelport_model_info for model {model!r}"
            + (f" with {extra}" if extra else "")
            + ": is the release scraped, and the model name right?"
        )
    stable_v = [stable_version] if stable_version else served.get("stable", [])
    canary_v = [canary_version] if canary_version else served.get("canary", [])
    if not canary_v:
        raise RolloutError(f'no canary of {model!r} is serving (no variant="canary" series)')
    data = {
        "stable": VariantData(",".join(stable_v) or None),
        "canary": VariantData(",".join(canary_v)),
    }

    def per_variant(promql: str) -> list[tuple[VariantData, dict[str, str], float]]:
        rows = []
        for labels, value in prom.query(promql):
            target = data.get(labels.get("variant", "stable"))
            if target is not None:
                rows.append((target, labels, value))
        return rows

    def inc(metric: str, **labels: str) -> str:
        return increase(f"{metric}{selector(model, extra, **labels)}", window)

    api = f"{extra},{API}" if extra else API
    requests = increase(f"modelport_requests_total{selector(model, api)}", window)
    errors = increase(f"modelport_requests_total{selector(model, f'{api},{ERRORS}')}", window)
    latency = increase(f"modelport_request_duration_seconds_bucket{selector(model, api)}", window)
    for target, _, value in per_variant(f"sum by (variant) ({requests})"):
        target.requests = value
    for target, _, value in per_variant(f"sum by (variant) ({errors})"):
        target.errors = value
    for target, labels, value in per_variant(f"sum by (variant, le) ({latency})"):
        target.latency_buckets[_le(labels["le"])] = value
    if task == "regression":
        promql = f"sum by (variant, le) ({inc('modelport_prediction_value_bucket')})"
        key = "le"
    else:
        promql = f"sum by (variant, class) ({inc('modelport_predictions_total')})"
        key = "class"
    for target, labels, value in per_variant(promql):
        target.predictions[labels[key]] = value

    obs = Observations(
        model, task, data["stable"], data["canary"], shadow=shadow, shadow_only=shadow_only
    )
    agreement = prom.query(
        "sum by (agree) ("
        + inc(
            "modelport_shadow_agreement_total",
            variant="stable",
            canary_version=_regex(canary_v),
        )
        + ")"
    )
    for labels, value in agreement:
        if labels.get("agree") == "true":
            obs.agree = value
        elif labels.get("agree") == "false":
            obs.disagree = value
    for labels, value in prom.query(
        f"sum by (outcome) ({inc('modelport_shadow_mirrored_total', variant='stable')})"
    ):
        obs.mirrored[labels.get("outcome", "?")] = value

    # Feedback belongs to the version that predicted (the request names it), whichever
    # pod received it: grouped by model_version, not by variant.
    wanted = {v: "stable" for v in stable_v} | {v: "canary" for v in canary_v}
    feedback = {"stable": obs.feedback_stable, "canary": obs.feedback_canary}
    if not wanted:
        return obs
    versions_re = _regex(sorted(wanted))
    if task == "regression":
        for metric, attr in (
            ("modelport_feedback_observations_total", "observations"),
            ("modelport_feedback_squared_error_total", "squared_error"),
            ("modelport_feedback_absolute_error_total", "absolute_error"),
        ):
            for labels, value in prom.query(
                f"sum by (model_version) ({inc(metric, model_version=versions_re)})"
            ):
                fb: Feedback = feedback[wanted[labels["model_version"]]]
                setattr(fb, attr, getattr(fb, attr) + value)
    else:
        for labels, value in prom.query(
            "sum by (model_version, predicted, actual) ("
            + inc("modelport_feedback_total", model_version=versions_re)
            + ")"
        ):
            fb = feedback[wanted[labels["model_version"]]]
            pair = (labels["predicted"], labels["actual"])
            fb.confusion[pair] = fb.confusion.get(pair, 0.0) + value
    return obs


# -- helm and kubectl -------------------------------------------------------------------


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RolloutError(f"{name} is not on PATH")
    return found


def run(tool: str, args: list[str], stdin: str | None = None, timeout: float = 900) -> str:
    proc = subprocess.run(
        [_tool(tool), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise RolloutError(f"{tool} {args[0]} failed: {lines[-1] if lines else proc.returncode}")
    return proc.stdout


def helm_values(release: str, namespace: str) -> dict[str, Any]:
    """The release's user-supplied values (what --reuse-values keeps)."""
    text = run("helm", ["get", "values", release, "--namespace", namespace, "--output", "json"])
    values = json.loads(text or "{}")
    return values if isinstance(values, dict) else {}


def annotate(deployment: str, namespace: str, patch: dict[str, Any]) -> None:
    run(
        "kubectl",
        [
            "patch",
            "deployment",
            deployment,
            "--namespace",
            namespace,
            "--type",
            "merge",
            "--patch",
            json.dumps(patch),
        ],
    )


def record_event(event: dict[str, Any]) -> None:
    run("kubectl", ["create", "--filename", "-"], stdin=json.dumps(event))


def publish(report: Report, deployment: str, namespace: str, action: str | None = None) -> None:
    """The verdict on the canary Deployment (annotation) and as an Event."""
    from modelport import rollout

    annotate(deployment, namespace, rollout.annotation_patch(report, action))
    record_event(rollout.event(report, deployment, namespace, action))
