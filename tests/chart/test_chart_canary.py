"""The chart's side of canary releases: the variant of each Deployment, shadow traffic to
the canary Service, Helm actuation as `modelport rollout` drives it (the same `--set`s,
rendered by `helm template`), and the Argo Rollouts / Flagger templates validated against
their CRDs, their PromQL checked by promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from modelport import rollout

from .chartlib import KUBE_VERSIONS, CrdValidators, Doc, KubeValidate, Renderer, find, one

pytestmark = pytest.mark.chart

CANARY = ("--set", "canary.enabled=true", "--set-string", "canary.model.version=v2")
ARGO = ("--set", "canary.analysis.argoRollouts.enabled=true")
FLAGGER = ("--set", "canary.analysis.flagger.enabled=true")


def env(deployment: Doc) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def stable_pod_labels(docs: list[Doc]) -> dict[str, str]:
    labels: dict[str, str] = one(docs, "Deployment", "modelport")["spec"]["template"]["metadata"][
        "labels"
    ]
    return labels


def sets(values: dict[str, str]) -> tuple[str, ...]:
    """`modelport rollout`'s helm upgrade values as `helm template` arguments."""
    args = rollout.Release("modelport", "models", "chart").upgrade(values)
    return tuple(args[args.index("--wait") + 1 :])


def test_each_deployment_names_its_variant(render: Renderer) -> None:
    docs = render(None, *CANARY)
    assert env(one(docs, "Deployment", "modelport"))["MODELPORT_VARIANT"] == "stable"
    assert env(one(docs, "Deployment", "modelport-canary"))["MODELPORT_VARIANT"] == "canary"
    assert "MODELPORT_SHADOW_URL" not in env(one(docs, "Deployment", "modelport"))


def test_shadow_mirrors_from_stable_to_the_canary_service(render: Renderer) -> None:
    docs = render(None, *CANARY, "--set", "canary.shadow.enabled=true")
    stable = env(one(docs, "Deployment", "modelport"))
    assert stable["MODELPORT_SHADOW_URL"] == "http://modelport-canary:3000"
    assert stable["MODELPORT_SHADOW_FRACTION"] == "0.1"
    assert stable["MODELPORT_SHADOW_TOLERANCE"] == "0.01"
    assert "MODELPORT_SHADOW_URL" not in env(one(docs, "Deployment", "modelport-canary"))
    service = one(docs, "Service", "modelport-canary")
    canary = one(docs, "Deployment", "modelport-canary")
    pod_labels = canary["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["selector"]["track"] == "canary"
    # With a NetworkPolicy, stable pods are clients it admits (the mirrored requests).
    assert stable_pod_labels(docs)["modelport-client"] == "true"
    # Stable pods never match the canary Service.
    stable_labels = one(docs, "Deployment", "modelport")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= stable_labels.items()


MONITORED = (
    "--set",
    "networkPolicy.enabled=true",
    "--set",
    "apiVersions[0]=monitoring.coreos.com/v1/ServiceMonitor",
)


def pod_labels(docs: list[Doc], name: str) -> dict[str, str]:
    labels: dict[str, str] = one(docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(service: Doc, labels: dict[str, str]) -> bool:
    return bool(service["spec"]["selector"].items() <= labels.items())


def test_shadow_only_canary_takes_mirrored_traffic_only(
    render: Renderer, kube_validate: KubeValidate, crd_validators: CrdValidators
) -> None:
    """`rollout start --shadow` and `--shadow-only`, rendered as the CLI sets them: in both
    the canary Service reaches the canary pods (mirrored requests) and the NetworkPolicy
    admits them from stable pods; only shadow-only takes the canary out of the main Service.
    Nothing else changes between the modes: no pod template, no Deployment selector."""
    live = render(None, *MONITORED, *sets(rollout.start_values("v2", shadow_fraction=1.0)))
    only = render(
        None, *MONITORED, *sets(rollout.start_values("v2", shadow_fraction=1.0, shadow_only=True))
    )
    for docs, canary_live in ((live, True), (only, False)):
        main, canary = one(docs, "Service", "modelport"), one(docs, "Service", "modelport-canary")
        stable_pods, canary_pods = (
            pod_labels(docs, "modelport"),
            pod_labels(docs, "modelport-canary"),
        )
        assert selects(main, stable_pods)
        assert selects(main, canary_pods) is canary_live
        assert selects(canary, canary_pods) and not selects(canary, stable_pods)
        stable_env = env(one(docs, "Deployment", "modelport"))
        assert stable_env["MODELPORT_SHADOW_URL"] == "http://modelport-canary:3000"
        assert float(stable_env["MODELPORT_SHADOW_FRACTION"]) == 1.0
        policy = one(docs, "NetworkPolicy", "modelport")
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= canary_pods.items()
        (rule,) = policy["spec"]["ingress"]
        assert {"podSelector": {"matchLabels": {"modelport-client": "true"}}} in rule["from"]
        assert stable_pods["modelport-client"] == "true"
        for doc in docs:
            if doc["apiVersion"].startswith("monitoring.coreos.com"):
                crd_validators[(doc["apiVersion"], doc["kind"])](doc)
            else:
                for version in (KUBE_VERSIONS[0], KUBE_VERSIONS[-1]):
                    kube_validate(doc, version)
    assert one(only, "Service", "modelport")["spec"]["selector"] == {
        "app.kubernetes.io/name": "modelport",
        "app.kubernetes.io/instance": "modelport",
        "track": "stable",
    }
    for name in ("modelport", "modelport-canary"):
        assert one(live, "Deployment", name) == one(only, "Deployment", name)
    # promote and abort put the canary back to the main Service's selection rules.
    ended = render(
        None,
        *MONITORED,
        *sets(rollout.start_values("v2", shadow_only=True)),
        *sets(rollout.abort_values()),
    )
    assert "track" not in one(ended, "Service", "modelport")["spec"]["selector"]


def test_shadow_only_upgrade_keeps_the_main_service_endpoints(render: Renderer) -> None:
    """An upgrade to shadow-only (even from a release made by an older chart) must not
    leave the main Service without endpoints while pods roll. Its selector in shadow-only
    is within the stable Deployment's spec.selector, which is immutable and so on every
    stable pod that release ever ran: the running pods keep matching, none restarts."""
    docs = render(
        None, *CANARY, "--set", "canary.shadow.enabled=true", "--set", "canary.shadow.only=true"
    )
    main = one(docs, "Service", "modelport")
    stable = one(docs, "Deployment", "modelport")
    assert main["spec"]["selector"].items() <= stable["spec"]["selector"]["matchLabels"].items()
    before = render(None, *CANARY, "--set", "canary.shadow.enabled=true")
    assert one(before, "Deployment", "modelport") == stable
    # Deployment selectors are the same as without any canary: nothing immutable moved.
    plain = render(None)
    assert one(plain, "Deployment", "modelport")["spec"]["selector"] == stable["spec"]["selector"]


def test_shadow_only_needs_mirroring(render: Renderer) -> None:
    message = render.error(None, *CANARY, "--set", "canary.shadow.only=true")
    assert "canary.shadow.only needs canary.shadow.enabled" in message


def test_service_monitor_scrapes_each_pod_once_as_the_release_job(render: Renderer) -> None:
    """Canary pods sit behind both Services (only the canary one when shadow-only): the
    main Service's canary targets are dropped and both jobs are named after the release, so
    the judge and the rules see each pod once, as job=<fullname>, in either mode."""
    docs = render(None, *MONITORED, *CANARY)
    (endpoint,) = one(docs, "ServiceMonitor", "modelport")["spec"]["endpoints"]
    rules = endpoint["relabelings"]
    assert {
        "sourceLabels": ["__meta_kubernetes_service_name", "__meta_kubernetes_pod_label_track"],
        "regex": "modelport;canary",
        "action": "drop",
    } in rules
    assert {"targetLabel": "job", "replacement": "modelport"} in rules
    assert not find(render(None, *CANARY), "ServiceMonitor")


def test_shadow_fraction_out_of_range_is_refused(render: Renderer) -> None:
    message = render.error(None, *CANARY, "--set", "canary.shadow.fraction=1.5")
    assert "fraction" in message


def test_rollout_start_promote_abort_render(render: Renderer) -> None:
    """start -> canary with the version and shadow; promote -> stable takes it, no canary;
    abort -> no canary. The same value changes `helm upgrade --reuse-values` gets."""
    base = ("--set-string", "model.version=v1", "--set-string", "image.tag=1.0.0")
    started = render(None, *base, *sets(rollout.start_values("v2", "1.1.0", 0.5)))
    canary = one(started, "Deployment", "modelport-canary")
    assert canary["spec"]["template"]["metadata"]["labels"]["modelport.io/model-version"] == "v2"
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == "modelport:1.1.0"
    assert env(one(started, "Deployment", "modelport"))["MODELPORT_SHADOW_FRACTION"] == "0.5"

    user_values = {
        "model": {"version": "v1"},
        "image": {"tag": "1.0.0"},
        "canary": {"enabled": True, "model": {"version": "v2"}, "image": {"tag": "1.1.0"}},
    }
    promoted = render(
        None,
        *base,
        *sets(rollout.start_values("v2", "1.1.0")),
        *sets(rollout.promote_values(user_values)),
    )
    assert not [d for d in promoted if d["metadata"]["name"].endswith("-canary")]
    stable = one(promoted, "Deployment", "modelport")
    assert stable["spec"]["template"]["metadata"]["labels"]["modelport.io/model-version"] == "v2"
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "modelport:1.1.0"
    assert "MODELPORT_SHADOW_URL" not in env(stable)

    aborted = render(None, *base, *sets(rollout.start_values("v2")), *sets(rollout.abort_values()))
    assert not [d for d in aborted if d["metadata"]["name"].endswith("-canary")]
    stable = one(aborted, "Deployment", "modelport")
    assert stable["spec"]["template"]["metadata"]["labels"]["modelport.io/model-version"] == "v1"


def test_analysis_templates_off_by_default(render: Renderer) -> None:
    docs = render(None, *CANARY)
    assert not [d for d in docs if d["kind"] in ("AnalysisTemplate", "MetricTemplate")]


def test_argo_analysis_template_valid(render: Renderer, crd_validators: CrdValidators) -> None:
    docs = render(None, *CANARY, *ARGO, "--set", "canary.shadow.enabled=true")
    template = one(docs, "AnalysisTemplate")
    crd_validators[("argoproj.io/v1alpha1", "AnalysisTemplate")](template)
    metrics = {m["name"]: m for m in template["spec"]["metrics"]}
    assert set(metrics) == {
        "error-ratio-increase",
        "p99-latency",
        "prediction-psi",
        "online-accuracy-drop",
        "online-rmse-ratio",
        "shadow-agreement",
    }
    assert metrics["prediction-psi"]["successCondition"] == "len(result) > 0 && result[0] <= 0.1"
    assert metrics["online-rmse-ratio"]["successCondition"].endswith("<= 1.1")
    # Without shadow traffic there is no agreement to judge.
    plain = one(render(None, *CANARY, *ARGO), "AnalysisTemplate")
    assert "shadow-agreement" not in {m["name"] for m in plain["spec"]["metrics"]}


def test_flagger_metric_templates_valid(render: Renderer, crd_validators: CrdValidators) -> None:
    docs = [d for d in render(None, *FLAGGER) if d["kind"] == "MetricTemplate"]
    assert {d["metadata"]["name"] for d in docs} == {
        "modelport-error-ratio-increase",
        "modelport-p99-latency-ratio",
        "modelport-prediction-psi",
    }
    for doc in docs:
        crd_validators[("flagger.app/v1beta1", "MetricTemplate")](doc)


def test_template_queries_are_promql(render: Renderer, promtool: str, tmp_path: Path) -> None:
    """Every query, with Argo's and Flagger's variables filled in, parses as PromQL."""
    docs = render(None, *CANARY, *ARGO, *FLAGGER, "--set", "canary.shadow.enabled=true")
    queries = [
        m["provider"]["prometheus"]["query"]
        for m in one(docs, "AnalysisTemplate")["spec"]["metrics"]
    ] + [d["spec"]["query"] for d in docs if d["kind"] == "MetricTemplate"]
    fill = {
        "{{args.canary-version}}": "v2",
        "{{args.stable-version}}": "v1",
        "{{ namespace }}": "models",
        "{{ target }}": "modelport",
        "{{ interval }}": "1m",
    }
    rules = []
    for i, query in enumerate(queries):
        for key, value in fill.items():
            query = query.replace(key, value)
        assert "{{" not in query, query
        rules.append({"record": f"check_{i}", "expr": query})
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "checks", "rules": rules}]}))
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _series(metric: str, pod: str, values: str, **labels: str) -> dict[str, str]:
    base = {"namespace": "models", "pod": pod, "model_name": "breast-cancer"} | labels
    inner = ",".join(f'{k}="{v}"' for k, v in base.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


def test_flagger_queries_need_their_minimum_sample(
    render: Renderer, promtool: str, tmp_path: Path
) -> None:
    """Flagger's MetricTemplates, run by promtool on series shaped like a Flagger canary
    (pods <target>-primary-* and <target>-*): below the minimum sample a query has no
    result (Flagger halts advancement), above it the value the threshold judges."""
    docs = [d for d in render(None, *FLAGGER) if d["kind"] == "MetricTemplate"]
    fill = {"{{ namespace }}": "models", "{{ target }}": "modelport", "{{ interval }}": "5m"}
    rules = []
    for doc in docs:
        query = doc["spec"]["query"]
        for key, value in fill.items():
            query = query.replace(key, value)
        name = doc["metadata"]["name"].removeprefix("modelport-").replace("-", "_")
        rules.append({"record": f"flagger:{name}", "expr": query})
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "f", "rules": rules}]})
    )

    def case(per_minute: int) -> dict[str, object]:
        """Both sides at `per_minute` requests and predictions; a tenth of the canary's
        requests fail; classes 50/50 on both sides."""
        series = []
        for pod, errors in (("modelport-primary-5d9f-x2k4q", 0), ("modelport-7c4b-p8m2z", 1)):
            ok = per_minute - per_minute * errors // 10
            for code, rate in (("200", ok), ("500", per_minute - ok)):
                series.append(
                    _series(
                        "modelport_requests_total",
                        pod,
                        f"0+{rate}x10",
                        endpoint="predict",
                        code=code,
                    )
                )
            for le in ("0.01", "+Inf"):
                series.append(
                    _series(
                        "modelport_request_duration_seconds_bucket",
                        pod,
                        f"0+{per_minute}x10",
                        endpoint="predict",
                        le=le,
                    )
                )
            for cls in ("0", "1"):
                series.append(
                    _series(
                        "modelport_predictions_total",
                        pod,
                        f"0+{per_minute // 2}x10",
                        **{"class": cls},
                    )
                )
        return {"interval": "1m", "input_series": series}

    few, enough = case(2), case(40)  # 10 / 200 requests in the 5 m window (minimum 50)
    few["promql_expr_test"] = [
        {"expr": f"flagger:{n}", "eval_time": "10m", "exp_samples": []}
        for n in ("error_ratio_increase", "p99_latency_ratio", "prediction_psi")
    ]
    enough["promql_expr_test"] = [
        {
            "expr": "flagger:error_ratio_increase",
            "eval_time": "10m",
            "exp_samples": [{"labels": "flagger:error_ratio_increase", "value": 0.1}],
        },
        {
            "expr": "flagger:p99_latency_ratio",
            "eval_time": "10m",
            "exp_samples": [{"labels": "flagger:p99_latency_ratio", "value": 1}],
        },
        {
            "expr": "flagger:prediction_psi",
            "eval_time": "10m",
            "exp_samples": [{"labels": "flagger:prediction_psi", "value": 0}],
        },
    ]
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [few, enough]}
    (tmp_path / "flagger.test.yaml").write_text(yaml.safe_dump(tests))
    proc = subprocess.run(
        [promtool, "test", "rules", "flagger.test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
