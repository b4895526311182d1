"""The judge end to end: a real Prometheus (1 s scrapes) scraping real `bentoml serve`
processes on loopback, one stable (MODELPORT_VARIANT=stable) and three canaries
(MODELPORT_VARIANT=canary), each canary with the stable server in its own scrape job, as
each would be its own release:

- good: the same recipe with another regularisation (C=0.5): promote;
- shuffled: trained on shuffled labels: its predictions and its feedback give it away;
- schema: trained without one feature, so it rejects (400) every request stable answers;
- shadow: a second stable server mirroring every request to the shuffled-label canary
  (MODELPORT_SHADOW_URL): the predictions' agreement, counted by the stable server, fails.

Traffic and feedback come from the test; `modelport rollout analyze` runs as a user runs it,
and the chart's Argo Rollouts AnalysisTemplate queries run on the same Prometheus.
`modelport rollout run` runs its real loop against the same Prometheus, with helm and kubectl
replaced on PATH by recorders that render the real chart (tests/rollout/recorded_tools.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from modelport import server as srv
from tests import prom
from tests.chart.chartlib import CHART, find_tool
from tests.conftest import IN_CI
from tests.service.conftest import Server, launch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "bc-rollout"  # its own name: never touches the session's breast-cancer versions
NAMESPACE = "models"
SCENARIOS = ("good", "shuffled", "schema", "shadow")
# Loopback p99s of two servers on a shared 2-core machine differ by more than the chart's
# 10 ms slack under other load; the check itself is unit-tested.
THRESHOLDS = ["p99_slack_seconds=0.1", "min_requests=100", "min_feedback=100"]
ROWS = 160  # requests per variant and scenario


@dataclass
class Trained:
    X: Any  # features (DataFrame)
    y: Any  # labels
    stable: str
    canaries: dict[str, str]


@pytest.fixture(scope="module")
def trained(settings) -> Trained:  # type: ignore[no-untyped-def]
    from rich.console import Console

    from training.data import Dataset, frame_sha256, validate_frame
    from training.recipes import RECIPES
    from training.run import Choice, train

    recipe = RECIPES["breast-cancer"]
    frame = recipe.load()

    def fit(data_frame, force: bool = False, params: dict | None = None) -> str:  # type: ignore[no-untyped-def]
        X, y, task = validate_frame(
            data_frame,
            recipe.target,
            source=MODEL,
            task=recipe.task,
            min_rows=settings.min_rows,
            max_categories=settings.max_categories,
        )
        data = Dataset(X, y, task, MODEL, frame_sha256(data_frame))
        result = train(
            data,
            name=MODEL,
            framework="sklearn",
            settings=settings,
            console=Console(quiet=True),
            force=force,
            choice=Choice(params=params or {}),
        )
        assert result.registered, result.gate.failures
        return result.tag.split(":")[1]

    stable = fit(frame)
    shuffled = frame.copy()
    shuffled[recipe.target] = np.random.default_rng(7).permutation(shuffled[recipe.target].values)
    canaries = {
        "good": fit(frame, params={"C": 0.5}),
        "shuffled": fit(shuffled, force=True),
        "schema": fit(frame.drop(columns=["mean radius"]), force=True),
    }
    X = frame.drop(columns=[recipe.target])
    return Trained(X, frame[recipe.target].to_numpy(), stable, canaries)


@pytest.fixture(scope="module")
def servers(
    trained: Trained, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    """The stable server and the three canaries, started together."""
    started: dict[str, Server] = {}
    versions = {"stable": trained.stable, **trained.canaries}

    def start(role: str, version: str, env: dict[str, str]) -> None:
        started[role] = launch(
            tmp_path_factory.mktemp(f"rollout-{role}"), f"{MODEL}:{version}", env=env, wait=False
        )

    try:
        for role, version in versions.items():
            start(role, version, {"MODELPORT_VARIANT": "stable" if role == "stable" else "canary"})
        for s in started.values():
            srv.wait_ready(s.url, s.proc, timeout=120)
        start(
            "shadow-stable",
            trained.stable,
            {
                "MODELPORT_VARIANT": "stable",
                "MODELPORT_SHADOW_URL": started["shuffled"].url,
                "MODELPORT_SHADOW_FRACTION": "1",
            },
        )
        srv.wait_ready(started["shadow-stable"].url, started["shadow-stable"].proc, timeout=120)
        yield started
    finally:
        for s in started.values():
            s.stop()


@pytest.fixture(scope="module")
def prometheus(
    servers: dict[str, Server], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    # One job per scenario, named as the chart's release <scenario>-modelport would be, with
    # the namespace label the ServiceMonitor's targets carry.
    pairs = {s: (servers["stable"], servers[s]) for s in SCENARIOS if s != "shadow"}
    pairs["shadow"] = (servers["shadow-stable"], servers["shuffled"])
    jobs = [
        {
            "job_name": f"{scenario}-modelport",
            "static_configs": [
                {
                    "targets": [s.url.removeprefix("http://") for s in pair],
                    "labels": {"namespace": NAMESPACE},
                }
            ],
        }
        for scenario, pair in pairs.items()
    ]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": jobs,
    }
    with prom.running(tmp_path_factory.mktemp("prometheus"), config) as url:
        # Both targets of every job scraped twice, so traffic from now on is counted.
        wait_for(lambda: query(url, "count(up == 1)") == [2.0 * len(jobs)], 30)
        time.sleep(2.5)
        yield url


wait_for = prom.wait_for
query = prom.query


def traffic(trained: Trained, stable: Server, canary: Server) -> None:
    """ROWS single-row predictions to each, interleaved (same load on both), then the true
    labels of the answered ones as feedback naming the version that predicted."""
    records = trained.X.to_dict(orient="records")
    answered: dict[str, list[tuple[str, Any, Any]]] = {"stable": [], "canary": []}
    with stable.client() as s, canary.client() as c:
        for i in range(ROWS):
            row = i % len(records)
            for side, client in (("stable", s), ("canary", c)):
                r = client.post("/predict", json={"model": MODEL, "instances": [records[row]]})
                if r.status_code == 200:
                    body = r.json()
                    answered[side].append(
                        (body["model_version"], body["predictions"][0], trained.y[row])
                    )
        for side, client in (("stable", s), ("canary", c)):
            pairs = answered[side]
            if pairs:
                items = [{"prediction": p, "label": int(y)} for _, p, y in pairs]
                client.post(
                    "/feedback", json={"model": MODEL, "model_version": pairs[0][0], "items": items}
                ).raise_for_status()
    time.sleep(3.5)  # a few scrapes


def mirror(trained: Trained, stable: Server) -> None:
    """Predictions to the mirroring stable server only; it sends each to the canary after
    answering and counts whether both agreed."""
    records = trained.X.to_dict(orient="records")
    with stable.client() as s:
        for i in range(ROWS):
            s.post(
                "/predict", json={"model": MODEL, "instances": [records[i % len(records)]]}
            ).raise_for_status()
    time.sleep(3.5)


def analyze(prometheus: str, scenario: str, *extra: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelport",
            "rollout",
            "analyze",
            "--model",
            MODEL,
            "--prometheus",
            prometheus,
            "--selector",
            f'namespace="{NAMESPACE}",job="{scenario}-modelport"',
            "--window",
            "5m",
            *(arg for t in THRESHOLDS for arg in ("--threshold", t)),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode in (0, 3, 4), proc.stderr
    if "--output" in extra:
        return proc.returncode, json.loads(proc.stdout)
    print(proc.stdout)  # the table, for the record (pytest -s)
    return proc.returncode, {}


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


@pytest.fixture(scope="module")
def reports(trained: Trained, servers: dict[str, Server], prometheus: str) -> dict[str, Any]:
    """Each scenario analysed before any traffic (not enough data), then after it."""
    out: dict[str, Any] = {}
    out["before"] = analyze(prometheus, "good", "--output", "json")
    for scenario in ("good", "shuffled", "schema"):
        traffic(trained, servers["stable"], servers[scenario])
    mirror(trained, servers["shadow-stable"])
    for scenario in SCENARIOS:
        out[scenario] = analyze(prometheus, scenario, "--output", "json")
        analyze(prometheus, scenario)  # the table, printed
    return out


def test_not_enough_data_is_neither_pass_nor_fail(reports: dict[str, Any]) -> None:
    code, report = reports["before"]
    assert code == 4
    assert report["verdict"] == "inconclusive"
    assert statuses(report)["error_ratio"] == "insufficient"
    assert statuses(report)["online_accuracy"] == "insufficient"


def test_good_canary_passes(reports: dict[str, Any], trained: Trained) -> None:
    code, report = reports["good"]
    assert (code, report["verdict"]) == (0, "pass"), report
    assert report["canary_version"] == trained.canaries["good"]
    assert report["stable_version"] == trained.stable
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["error_ratio"]["canary"] == 0
    assert checks["prediction_psi"]["canary"] < 0.01
    assert checks["online_accuracy"]["samples"] >= ROWS * 0.9
    assert checks["shadow_agreement"]["status"] == "skipped"


def test_shuffled_labels_canary_fails(reports: dict[str, Any]) -> None:
    code, report = reports["shuffled"]
    assert (code, report["verdict"]) == (3, "fail"), report
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["online_accuracy"]["status"] == "fail"
    assert checks["online_accuracy"]["stable"] > 0.9
    assert checks["online_accuracy"]["canary"] < 0.8
    assert checks["error_ratio"]["status"] == "pass"  # it answers, wrongly


def test_canary_rejecting_requests_fails(reports: dict[str, Any]) -> None:
    code, report = reports["schema"]
    assert (code, report["verdict"]) == (3, "fail"), report
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["error_ratio"]["status"] == "fail"
    assert checks["error_ratio"]["canary"] > 0.9
    assert checks["error_ratio"]["stable"] == 0
    # It predicted nothing, so there is nothing to compare its predictions with.
    assert checks["prediction_psi"]["status"] == "insufficient"


def test_shadow_disagreement_fails(reports: dict[str, Any]) -> None:
    """Shadowing the shuffled-label canary: the stable server's comparisons disagree."""
    code, report = reports["shadow"]
    assert code == 3, report
    check = {c["name"]: c for c in report["checks"]}["shadow_agreement"]
    assert check["status"] == "fail", check
    assert check["samples"] >= ROWS * 0.9
    assert check["canary"] < 0.8
    assert "compared" in check["detail"]


def argo_queries(helm: str, release: str, stable: str, canary: str) -> dict[str, str]:
    text = subprocess.run(
        [
            helm,
            "template",
            release,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--set",
            f"model.name={MODEL}",
            "--set",
            "canary.analysis.argoRollouts.enabled=true",
            "--set",
            "canary.analysis.minRequests=100",
            "--set",
            "canary.analysis.minFeedback=100",
            "--set",
            "canary.analysis.window=5m",
            "--show-only",
            "templates/analysistemplate.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    template = yaml.safe_load(text)
    return {
        m["name"]: m["provider"]["prometheus"]["query"]
        .replace("{{args.stable-version}}", stable)
        .replace("{{args.canary-version}}", canary)
        for m in template["spec"]["metrics"]
    }


def test_argo_analysis_template_agrees(
    reports: dict[str, Any], trained: Trained, prometheus: str
) -> None:
    """The chart's AnalysisTemplate, run on the same Prometheus, reaches the same verdicts
    (and values) as the judge."""
    helm = find_tool("helm")
    if helm is None:
        if IN_CI:
            pytest.fail("helm not found: run `make tools`")
        pytest.skip("helm not found (make tools installs it)")
    values: dict[str, dict[str, list[float]]] = {}
    for scenario in ("good", "shuffled", "schema"):
        queries = argo_queries(helm, scenario, trained.stable, trained.canaries[scenario])
        values[scenario] = {name: query(prometheus, q) for name, q in queries.items()}
    good, shuffled, schema = values["good"], values["shuffled"], values["schema"]
    judged = {s: {c["name"]: c for c in reports[s][1]["checks"]} for s in values}
    # good: every condition holds (error ratio increase 0, PSI and accuracy drop small).
    assert good["error-ratio-increase"] == [0.0]
    assert good["prediction-psi"][0] == pytest.approx(
        judged["good"]["prediction_psi"]["canary"], abs=0.01
    )
    assert good["online-accuracy-drop"][0] <= 0.02
    assert good["online-rmse-ratio"] == [1.0]  # a classifier: not applicable, passes
    # shuffled: the accuracy drop is the judge's stable minus canary accuracy.
    drop = judged["shuffled"]["online_accuracy"]
    assert shuffled["online-accuracy-drop"][0] == pytest.approx(
        drop["stable"] - drop["canary"], abs=0.02
    )
    assert shuffled["online-accuracy-drop"][0] > 0.02
    # schema: errors; no predictions, so the PSI query has no result (inconclusive).
    assert schema["error-ratio-increase"][0] > 0.9
    assert schema["prediction-psi"] == []


# -- rollout run: the real loop on the real Prometheus, helm and kubectl recorded ----------


@dataclass
class Run:
    code: int
    seconds: float
    stdout: str
    stderr: str
    calls: list[dict[str, Any]]

    def upgrades(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["tool"] == "helm" and c["args"][0] == "upgrade"]

    def kubectl(self, verb: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["tool"] == "kubectl" and c["args"][0] == verb]

    def event(self) -> dict[str, Any]:
        (created,) = self.kubectl("create")
        event: dict[str, Any] = created["object"]
        return event


RunRollout = Callable[..., Run]


class RecordedRelease:
    """A Helm release without a cluster: its user values in a state directory, `helm` and
    `kubectl` on PATH replaced by tests/rollout/recorded_tools.py; `modelport rollout`
    commands run against it as subprocesses, as a user runs them."""

    def __init__(self, state: Path, helm: str, values: dict[str, Any], ready: dict[str, str]):
        self.state = state
        (state / "bin").mkdir()
        script = Path(__file__).with_name("recorded_tools.py")
        for tool in ("helm", "kubectl"):
            wrapper = state / "bin" / tool
            wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" {tool} "$@"\n')
            wrapper.chmod(0o755)
        (state / "values.json").write_text(json.dumps(values))
        self.env = os.environ | {
            "PATH": f"{state / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "ROLLOUT_TOOLS_DIR": str(state),
            "ROLLOUT_REAL_HELM": helm,
            "ROLLOUT_READY_URLS": json.dumps(ready),
        }

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "modelport", "rollout", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=self.env,
        )

    def calls(self) -> list[dict[str, Any]]:
        path = self.state / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def recorded(
    trained: Trained, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., RecordedRelease]:
    """A fresh recorded release whose user values name the model and stable's version;
    `ready` maps Deployment names to servers whose /readyz stands for their readiness."""
    helm = find_tool("helm")
    if helm is None:
        if IN_CI:
            pytest.fail("helm not found: run `make tools`")
        pytest.skip("helm not found (make tools installs it)")

    def make(release: str, ready: dict[str, str] | None = None) -> RecordedRelease:
        values = {"model": {"name": MODEL, "version": trained.stable}}
        return RecordedRelease(
            tmp_path_factory.mktemp(f"release-{release}"), helm, values, ready or {}
        )

    return make


@pytest.fixture
def run_rollout(prometheus: str, recorded: Callable[..., RecordedRelease]) -> RunRollout:
    """`modelport rollout run RELEASE -n models ...` on a fresh recorded release."""

    def run(release: str, version: str, *extra: str) -> Run:
        target = recorded(release)
        began = time.monotonic()
        proc = target.cli(
            "run",
            release,
            "--namespace",
            NAMESPACE,
            "--version",
            version,
            "--chart",
            str(CHART),
            "--prometheus",
            prometheus,
            "--window",
            "5m",
            "--interval",
            "1s",
            *(arg for t in THRESHOLDS for arg in ("--threshold", t)),
            *extra,
        )
        seconds = time.monotonic() - began
        print(proc.stderr, proc.stdout)  # the loop's lines and the final table (pytest -s)
        return Run(proc.returncode, seconds, proc.stdout, proc.stderr, target.calls())

    return run


def test_run_promotes_a_good_canary_after_the_duration(
    reports: dict[str, Any], trained: Trained, run_rollout: RunRollout
) -> None:
    good = trained.canaries["good"]
    run = run_rollout("good", good, "--duration", "2s")
    assert run.code == 0, run.stderr
    assert run.seconds >= 2
    start, promote = run.upgrades()
    assert start["deployments"] == {"good-modelport": trained.stable, "good-modelport-canary": good}
    assert promote["deployments"] == {"good-modelport": good}  # canary gone, stable moved
    assert "--reuse-values" in promote["args"]
    # Passing before the duration: the verdict annotated while it waited, then promoted.
    patches = run.kubectl("patch")
    assert len(patches) >= 2
    notes = patches[0]["patch"]["metadata"]["annotations"]
    assert notes["modelport.io/rollout-verdict"] == "pass"
    assert (
        json.loads(
            patches[-1]["patch"]["metadata"]["annotations"]["modelport.io/rollout-evidence"]
        )["action"]
        == "promote"
    )
    assert run.event()["reason"] == "CanaryPromoted"
    assert f"promoted: good stable now serves model version {good}" in run.stdout


def test_run_aborts_a_failing_canary_at_once(
    reports: dict[str, Any], trained: Trained, run_rollout: RunRollout
) -> None:
    run = run_rollout("shuffled", trained.canaries["shuffled"], "--duration", "60s")
    assert run.code == 3, run.stderr
    assert run.seconds < 30  # the first analysis fails: no waiting for the duration
    start, abort = run.upgrades()
    assert "shuffled-modelport-canary" in start["deployments"]
    assert abort["deployments"] == {"shuffled-modelport": trained.stable}
    assert len(run.kubectl("patch")) == 1  # one analysis
    event = run.event()
    assert (event["reason"], event["type"]) == ("CanaryAborted", "Warning")
    assert "online_accuracy fail" in event["message"]
    assert "aborted: canary of shuffled removed (fail)" in run.stdout


@pytest.mark.parametrize("on_timeout", ["abort", "promote"])
def test_run_without_enough_data_waits_for_the_deadline(
    reports: dict[str, Any], trained: Trained, run_rollout: RunRollout, on_timeout: str
) -> None:
    """Feedback labels short of the minimum (min_feedback far above what arrived): the
    verdict stays inconclusive; run waits to the deadline, then aborts (exit 4), or
    promotes with --promote-on-timeout."""
    good = trained.canaries["good"]
    extra = ["--threshold", "min_feedback=100000", "--duration", "1s", "--deadline", "3s"]
    if on_timeout == "promote":
        extra.append("--promote-on-timeout")
    run = run_rollout("good", good, *extra)
    assert run.seconds >= 3
    patches = run.kubectl("patch")
    assert len(patches) >= 3  # waited past the duration: analysed again at each interval
    verdicts = {
        p["patch"]["metadata"]["annotations"]["modelport.io/rollout-verdict"] for p in patches
    }
    assert verdicts == {"inconclusive"}
    final = run.upgrades()[-1]["deployments"]
    if on_timeout == "abort":
        assert run.code == 4, run.stderr
        assert run.event()["reason"] == "CanaryAborted"
        assert final == {"good-modelport": trained.stable}
    else:
        assert run.code == 0, run.stderr
        assert run.event()["reason"] == "CanaryPromoted"
        assert final == {"good-modelport": good}


def test_start_analyze_status_on_a_release(
    reports: dict[str, Any],
    trained: Trained,
    servers: dict[str, Server],
    prometheus: str,
    recorded: Callable[..., RecordedRelease],
) -> None:
    """start, analyze (the verdict published on the canary Deployment), then status, as in
    docs/deploy.md's walk-through (whose status output is this test's)."""
    good = trained.canaries["good"]
    ready = {"good-modelport": servers["stable"].url, "good-modelport-canary": servers["good"].url}
    release = recorded("good", ready)
    common = ("--namespace", NAMESPACE)
    started = release.cli("start", "good", *common, "--version", good, "--chart", str(CHART))
    assert started.returncode == 0, started.stderr
    thresholds = [arg for t in THRESHOLDS for arg in ("--threshold", t)]
    judged = release.cli(
        "analyze", "good", *common, "--prometheus", prometheus, "--window", "5m", *thresholds
    )
    assert judged.returncode == 0, judged.stdout + judged.stderr
    status = release.cli("status", "good", *common)
    assert status.returncode == 0, status.stderr
    print(status.stdout)  # docs/deploy.md step 3 (pytest -s)
    lines = status.stdout.splitlines()
    assert lines[0] == f"good: model {MODEL}"
    assert lines[1].split(",")[0] == f"  stable  version {trained.stable}"
    assert lines[2].startswith(f"  canary  version {good}, image (stable image), 1/1 ready")
    assert lines[2].endswith("shadow off")
    assert lines[3].startswith("  verdict pass (at ")
    info = json.loads(release.cli("status", "good", *common, "-o", "json").stdout)
    assert info["canary"]["verdict"] == "pass"
    assert info["canary"]["ready"] == 1
