"""Assertions on the rendered objects: one test per requirement of the chart."""

from __future__ import annotations

import json
import re

import pytest

from .chartlib import NAMESPACE, RELEASE, SCENARIOS, Doc, Renderer, find, one

pytestmark = pytest.mark.chart

FULLNAME = RELEASE  # the release name contains the chart name
SELECTOR = {"app.kubernetes.io/name": "modelport", "app.kubernetes.io/instance": RELEASE}
MONITORING_APIS = (
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
)
# What BentoML 1.4 writes at run time under a read-only root filesystem (see values.yaml).
BENTOML_WRITABLE = {
    "/tmp",
    "/home/bentoml/prometheus_multiproc_dir",
    "/home/bentoml/tmp",
    "/home/bentoml/bentos",
    "/home/bentoml/models",
    "/home/bentoml/envs",
}


def container(deploy: Doc) -> Doc:
    containers = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env(deploy: Doc) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(deploy)["env"]}


def stable(docs: list[Doc]) -> Doc:
    return one(docs, "Deployment", FULLNAME)


def pod_specs(docs: list[Doc]) -> list[tuple[str, Doc]]:
    specs = [
        (f"Deployment/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in find(docs, "Deployment")
    ]
    specs += [(f"Pod/{d['metadata']['name']}", d["spec"]) for d in find(docs, "Pod")]
    return specs


# --- Deployment ---------------------------------------------------------------------------


def test_probes_on_named_port(render: Renderer) -> None:
    c = container(stable(render()))
    assert [p["name"] for p in c["ports"]] == ["http"]
    assert c["ports"][0]["containerPort"] == 3000
    # Startup gates on full readiness; readiness after it on /livez, which the preStop
    # drain leaves at 200 (no Unhealthy events on a normal stop).
    assert c["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}


def test_startup_probe_waits_for_a_load_instead_of_failing(render: Renderer) -> None:
    startup = container(stable(render()))["startupProbe"]
    # One probe holds the connection while the models load: a normal load never fails it.
    assert startup["timeoutSeconds"] >= 30
    # Nothing listens in the first seconds: a refused connection would be a failure.
    assert startup["initialDelaySeconds"] >= 5
    # A probe that times out takes timeoutSeconds: a TensorFlow load still fits 5 minutes.
    per_failure = max(startup["periodSeconds"], startup["timeoutSeconds"])
    assert startup["failureThreshold"] * per_failure >= 300


def test_rolling_update_never_reduces_capacity(render: Renderer) -> None:
    for scenario in SCENARIOS:
        for deploy in find(render(scenario), "Deployment"):
            strategy = deploy["spec"]["strategy"]
            assert strategy["type"] == "RollingUpdate"
            assert strategy["rollingUpdate"]["maxUnavailable"] == 0
            assert deploy["spec"]["revisionHistoryLimit"] >= 2


def test_graceful_shutdown_outlasts_prestop_and_longest_request(render: Renderer) -> None:
    deploy = stable(render())
    spec = deploy["spec"]["template"]["spec"]
    command = container(deploy)["lifecycle"]["preStop"]["exec"]["command"]
    # The drain hook (modelport/drain.py), run by the image's python from the bento's src.
    assert command[:4] == ["python", "-m", "modelport.drain", "--seconds"]
    assert env(deploy)["PYTHONPATH"] == "/home/bentoml/bento/src"
    assert env(deploy)["MODELPORT_DRAIN_FILE"].startswith("/tmp/")
    pause = int(command[4])
    timeout = json.loads(env(deploy)["BENTOML_CONFIG_OVERRIDES"])["services"]["modelport"][
        "traffic"
    ]["timeout"]
    assert pause >= 5, "the pause must outlast endpoint propagation"
    assert spec["terminationGracePeriodSeconds"] > pause + timeout


def test_drain_command_is_what_modelport_drain_accepts(render: Renderer) -> None:
    from modelport import drain

    command = container(stable(render(None, "--set", "preStopSleepSeconds=0")))["lifecycle"][
        "preStop"
    ]["exec"]["command"]
    assert command[-1] == "0"
    assert drain.main(command[3:]) == 0  # writes the marker under $TMPDIR, waits 0 s


def test_resources_have_requests_and_limits(render: Renderer) -> None:
    resources = container(stable(render()))["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) >= {"memory"}


def test_topology_spread_across_nodes_per_track(render: Renderer) -> None:
    for deploy in find(render("canary"), "Deployment"):
        track = deploy["spec"]["selector"]["matchLabels"]["track"]
        (tsc,) = deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert tsc["topologyKey"] == "kubernetes.io/hostname"
        assert tsc["labelSelector"]["matchLabels"] == {**SELECTOR, "track": track}
        assert tsc["matchLabelKeys"] == ["pod-template-hash"]


def test_model_labels_annotations_and_change_cause(render: Renderer) -> None:
    docs = render("canary")  # model breast-cancer v1 on image 1.0.0
    deploy = stable(docs)
    template = deploy["spec"]["template"]["metadata"]
    assert template["labels"]["modelport.io/model-name"] == "breast-cancer"
    assert template["labels"]["modelport.io/model-version"] == "1"
    assert template["annotations"]["modelport.io/model"] == "breast-cancer:1"
    cause = deploy["metadata"]["annotations"]["kubernetes.io/change-cause"]
    assert cause == "model breast-cancer:1 (image modelport:1.0.0)"
    assert env(deploy)["MODELPORT_MODELS"] == "breast-cancer:1"


def test_unversioned_image_models_are_served_as_pinned(render: Renderer) -> None:
    """Image source without model.version: the bento's own MODELPORT_MODELS (exact versions
    pinned at build) is left alone; labels and change-cause say the image decides."""
    deploy = stable(render())
    template = deploy["spec"]["template"]
    assert template["metadata"]["labels"]["modelport.io/model-version"] == "image"
    assert template["metadata"]["annotations"]["modelport.io/model-source"] == "image"
    assert "MODELPORT_MODELS" not in env(deploy)
    assert "initContainers" not in template["spec"]
    cause = deploy["metadata"]["annotations"]["kubernetes.io/change-cause"]
    assert cause == "model breast-cancer as pinned in image modelport:0.1.0"
    # Extra models still need the list: then the chart sets it (the name alone resolves to
    # the version the image holds).
    extra = stable(render(None, "--set-json", 'model.extraModels=["diabetes"]'))
    assert env(extra)["MODELPORT_MODELS"] == "breast-cancer,diabetes"


def test_extra_models_and_bentoml_config(render: Renderer) -> None:
    values = env(stable(render("monitoring")))
    assert values["MODELPORT_MODELS"] == "breast-cancer:1,diabetes,breast-cancer-keras"
    assert values["BENTOML_PORT"] == "3000"
    assert values["BENTOML_DO_NOT_TRACK"] == "true"
    config = json.loads(values["BENTOML_CONFIG_OVERRIDES"])
    assert config == {"services": {"modelport": {"workers": 1, "traffic": {"timeout": 30}}}}


def test_serving_settings_reach_the_service(render: Renderer) -> None:
    values = env(stable(render(None)))
    assert values["MODELPORT_KERAS_ARTIFACT"] == "auto"
    assert values["MODELPORT_SKLEARN_ARTIFACT"] == "auto"
    assert values["MODELPORT_MONITORING"] == "true"
    assert values["MODELPORT_DRIFT_FLUSH_SECONDS"] == "0.5"
    docs = render(
        None,
        "--set",
        "serving.kerasArtifact=tflite",
        "--set",
        "serving.sklearnArtifact=onnx",
        "--set",
        "serving.monitoring=false",
        "--set",
        "serving.driftFlushSeconds=0",
    )
    values = env(stable(docs))
    assert (
        values["MODELPORT_KERAS_ARTIFACT"],
        values["MODELPORT_SKLEARN_ARTIFACT"],
        values["MODELPORT_MONITORING"],
        values["MODELPORT_DRIFT_FLUSH_SECONDS"],
    ) == ("tflite", "onnx", "false", "0")
    # What the chart renders is what the service's settings accept.
    from modelport.settings import ServiceSettings

    settings = ServiceSettings(
        keras_artifact=values["MODELPORT_KERAS_ARTIFACT"],
        sklearn_artifact=values["MODELPORT_SKLEARN_ARTIFACT"],
        monitoring=values["MODELPORT_MONITORING"],
        drift_flush_seconds=values["MODELPORT_DRIFT_FLUSH_SECONDS"],
    )
    assert (
        settings.keras_artifact,
        settings.sklearn_artifact,
        settings.monitoring,
        settings.drift_flush_seconds,
    ) == ("tflite", "onnx", False, 0.0)


def test_explain_values_reach_the_service(render: Renderer) -> None:
    from modelport.settings import ServiceSettings

    defaults = env(stable(render(None)))
    assert (defaults["MODELPORT_EXPLAIN"], defaults["MODELPORT_EXPLAIN_MAX_ROWS"]) == ("true", "16")
    values = env(
        stable(
            render(
                None,
                "--set",
                "serving.explain.enabled=false",
                "--set",
                "serving.explain.budgetSeconds=2",
                "--set",
                "serving.explain.maxRows=4",
            )
        )
    )
    settings = ServiceSettings(
        explain=values["MODELPORT_EXPLAIN"],
        explain_budget_seconds=values["MODELPORT_EXPLAIN_BUDGET_SECONDS"],
        explain_max_rows=values["MODELPORT_EXPLAIN_MAX_ROWS"],
    )
    assert (settings.explain, settings.explain_budget_seconds, settings.explain_max_rows) == (
        False,
        2.0,
        4,
    )


def test_bentoml_config_overrides_deep_merge(render: Renderer) -> None:
    docs = render(
        None,
        "--set",
        "bentoml.workers=3",
        "--set",
        "bentoml.configOverrides.services.modelport.traffic.max_concurrency=64",
    )
    config = json.loads(env(stable(docs))["BENTOML_CONFIG_OVERRIDES"])
    assert config["services"]["modelport"] == {
        "workers": 3,
        "traffic": {"timeout": 30, "max_concurrency": 64},
    }


def test_image_tag_defaults_to_app_version_and_digest_pins(render: Renderer) -> None:
    assert container(stable(render()))["image"] == "modelport:0.1.0"
    image = container(stable(render("hardened")))["image"]
    assert re.fullmatch(r"registry\.example\.com/ml/modelport@sha256:[0-9a-f]{64}", image)


def test_replicas_set_without_autoscaler(render: Renderer) -> None:
    assert stable(render())["spec"]["replicas"] == 2


@pytest.mark.parametrize(("scenario", "replicas"), [("autoscaling", 2), ("keda", 1)])
def test_fresh_install_starts_at_the_autoscaler_minimum(
    render: Renderer, scenario: str, replicas: int
) -> None:
    # Offline (no live Deployment to look up) is what a fresh install renders; an upgrade
    # repeats the live count (templates/_helpers.tpl, modelport.autoscaledReplicas).
    extra = ("--api-versions", "keda.sh/v1alpha1/ScaledObject") if scenario == "keda" else ()
    assert stable(render(scenario, *extra))["spec"]["replicas"] == replicas


# --- Security -------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pod_security_standard_restricted(render: Renderer, scenario: str) -> None:
    """Every pod, including the `helm test` pod, meets PSS "restricted"."""
    for where, spec in pod_specs(render(scenario)):
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, where
        assert pod_sc["runAsUser"] == 1034, where
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        assert not spec.get("hostNetwork"), where
        assert not spec.get("hostPID"), where
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["runAsNonRoot"] is True, where
            assert sc["runAsUser"] == 1034, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= {"emptyDir", "configMap", "secret", "projected"}


def test_writable_dirs_are_exactly_what_bentoml_writes(render: Renderer) -> None:
    deploy = stable(render())
    mounts = container(deploy)["volumeMounts"]
    assert {m["mountPath"] for m in mounts} == BENTOML_WRITABLE
    (volume,) = deploy["spec"]["template"]["spec"]["volumes"]
    assert all(m["name"] == volume["name"] for m in mounts)
    assert "emptyDir" in volume
    # The bento itself (and its models) must stay visible: nothing mounted over it.
    assert not any(m["mountPath"] in {"/home/bentoml", "/home/bentoml/bento"} for m in mounts)
    assert len({m["subPath"] for m in mounts}) == len(mounts)


def test_own_service_account_without_token(render: Renderer) -> None:
    docs = render()
    sa = one(docs, "ServiceAccount", FULLNAME)
    assert sa["automountServiceAccountToken"] is False
    assert stable(docs)["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME


# --- Service, Ingress, PDB, NetworkPolicy ---------------------------------------------------


def test_service_selects_stable_and_canary_deployment_selectors_disjoint(render: Renderer) -> None:
    docs = render("canary")
    svc = one(docs, "Service", FULLNAME)
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 3000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"] == SELECTOR
    deployments = find(docs, "Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {FULLNAME, f"{FULLNAME}-canary"}
    selectors = []
    for deploy in deployments:
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        selector = deploy["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        assert SELECTOR.items() <= labels.items(), "the Service must reach this track"
        selectors.append(selector)
    assert {s["track"] for s in selectors} == {"stable", "canary"}


def test_canary_deployment(render: Renderer) -> None:
    canary = one(render("canary"), "Deployment", f"{FULLNAME}-canary")
    assert canary["spec"]["replicas"] == 1
    assert canary["metadata"]["labels"]["track"] == "canary"
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert labels["track"] == "canary"
    assert labels["modelport.io/model-version"] == "2"
    assert container(canary)["image"] == "modelport:1.1.0"
    assert env(canary)["MODELPORT_MODELS"] == "breast-cancer:2"
    cause = canary["metadata"]["annotations"]["kubernetes.io/change-cause"]
    assert cause == "model breast-cancer:2 (image modelport:1.1.0)"
    assert stable(render("canary"))["spec"]["replicas"] == 3


def test_no_canary_by_default(render: Renderer) -> None:
    assert len(find(render(), "Deployment")) == 1


def test_helm_test_pod(render: Renderer) -> None:
    docs = render()
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    assert c["image"] == container(stable(docs))["image"], "no extra image pull"
    assert c["command"][0] == "python3"
    script = c["command"][-1]
    for needle in ("/readyz", "/models", "/predict", '["sample"]', "predictions"):
        assert needle in script
    compile(script, "helm-test", "exec")
    assert pod["spec"]["restartPolicy"] == "Never"
    # Must not become a Service endpoint or count in the PDB.
    labels = pod["metadata"]["labels"]
    assert not SELECTOR.items() <= labels.items()
    assert labels[f"{FULLNAME}-client"] == "true"
    # Deleted even when it fails (after `helm test --logs` read it): nothing outlives
    # `helm uninstall`, and it is not labelled as one of the release's objects.
    policy = pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(",")
    assert set(policy) == {"before-hook-creation", "hook-succeeded", "hook-failed"}
    assert "app.kubernetes.io/instance" not in labels


def test_priority_class_created_when_asked(render: Renderer) -> None:
    assert not find(render(), "PriorityClass")
    docs = render("hardened")
    pc = one(docs, "PriorityClass", "high-priority")
    assert pc["value"] == 1000000 and pc["globalDefault"] is False
    assert stable(docs)["spec"]["template"]["spec"]["priorityClassName"] == "high-priority"
    message = render.error(None, "--set", "priorityClass.create=true")
    assert "priorityClass.create needs priorityClassName" in message


def test_ingress_optional(render: Renderer) -> None:
    assert not find(render(), "Ingress")
    ingress = one(render("autoscaling"), "Ingress", FULLNAME)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "models.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": FULLNAME,
        "port": {"number": 3000},
    }
    assert ingress["spec"]["tls"][0]["secretName"] == "models-example-tls"


def test_pod_disruption_budget(render: Renderer) -> None:
    pdb = one(render(), "PodDisruptionBudget", FULLNAME)
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR}}
    hardened = one(render("hardened"), "PodDisruptionBudget", FULLNAME)
    assert hardened["spec"]["minAvailable"] == 2
    assert "maxUnavailable" not in hardened["spec"]


def test_network_policy(render: Renderer) -> None:
    assert not find(render(), "NetworkPolicy")
    policy = one(render("hardened"), "NetworkPolicy", FULLNAME)
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": SELECTOR}
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    peers = rule["from"]
    assert {"podSelector": {"matchLabels": {f"{FULLNAME}-client": "true"}}} in peers
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    } in peers
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    } in peers
    assert {"podSelector": {"matchLabels": {"app": "frontend"}}} in peers
    assert len(peers) == 4


# --- Autoscaling ----------------------------------------------------------------------------


def test_hpa(render: Renderer) -> None:
    docs = render("autoscaling")
    hpa = one(docs, "HorizontalPodAutoscaler", FULLNAME)
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": FULLNAME,
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 6)
    by_type = {(m["type"], m.get("resource", {}).get("name")): m for m in spec["metrics"]}
    cpu = by_type[("Resource", "cpu")]["resource"]["target"]
    assert cpu == {"type": "Utilization", "averageUtilization": 60}
    assert by_type[("Resource", "memory")]["resource"]["target"]["averageUtilization"] == 80
    pods = by_type[("Pods", None)]["pods"]
    assert pods["metric"]["name"] == "modelport_requests_per_second"
    assert pods["target"] == {"type": "AverageValue", "averageValue": "15"}
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert not find(docs, "ScaledObject")


def test_no_hpa_by_default(render: Renderer) -> None:
    assert not find(render(), "HorizontalPodAutoscaler")


def test_keda_scaled_object(render: Renderer) -> None:
    docs = render("keda")
    assert not find(docs, "HorizontalPodAutoscaler"), "KEDA owns the HPA"
    so = one(docs, "ScaledObject", FULLNAME)
    spec = so["spec"]
    assert spec["scaleTargetRef"]["name"] == FULLNAME
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 8)
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    prom = next(t for t in spec["triggers"] if t["type"] == "prometheus")
    meta = prom["metadata"]
    assert meta["serverAddress"] == "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
    assert meta["threshold"] == "25"
    assert "modelport_requests_total" in meta["query"]
    assert f'job="{FULLNAME}",namespace="{NAMESPACE}"' in meta["query"]
    assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values are strings"
    cpu = next(t for t in spec["triggers"] if t["type"] == "cpu")
    assert cpu["metadata"] == {"value": "70"}


# --- Monitoring: capability gating ----------------------------------------------------------


def test_monitoring_absent_without_the_api(render: Renderer) -> None:
    docs = render()
    assert not find(docs, "ServiceMonitor")
    assert not find(docs, "PrometheusRule")


@pytest.mark.parametrize("how", ["values", "cluster"])
def test_monitoring_present_with_the_api(render: Renderer, how: str) -> None:
    if how == "values":
        extra = [f"--set=apiVersions[{i}]={api}" for i, api in enumerate(MONITORING_APIS)]
    else:  # what the cluster reports, as `helm install` sees it
        extra = [f"--api-versions={api}" for api in MONITORING_APIS]
    docs = render(None, *extra)
    sm = one(docs, "ServiceMonitor", FULLNAME)
    assert sm["spec"]["selector"] == {"matchLabels": SELECTOR}
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert endpoint["relabelings"][0]["targetLabel"] == "track"
    # The metrics' own `endpoint` label must survive the scrape (see servicemonitor.yaml).
    assert {"action": "labeldrop", "regex": "endpoint"} in endpoint["relabelings"]
    one(docs, "PrometheusRule", FULLNAME)


def test_monitoring_disabled_even_with_the_api(render: Renderer) -> None:
    extra = [f"--api-versions={api}" for api in MONITORING_APIS]
    docs = render(
        None,
        "--set",
        "serviceMonitor.enabled=false",
        "--set",
        "prometheusRule.enabled=false",
        *extra,
    )
    assert not find(docs, "ServiceMonitor")
    assert not find(docs, "PrometheusRule")


def test_service_monitor_labels_for_the_operator_selector(render: Renderer) -> None:
    docs = render("monitoring")
    assert one(docs, "ServiceMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert one(docs, "PrometheusRule")["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_keda_needs_its_api(render: Renderer) -> None:
    message = render.error(None, "--set", "keda.enabled=true")
    assert "keda.enabled needs KEDA (keda.sh/v1alpha1/ScaledObject)" in message
    assert find(
        render(
            None, "--set", "keda.enabled=true", "--api-versions", "keda.sh/v1alpha1/ScaledObject"
        ),
        "ScaledObject",
    )


# --- Dashboard ------------------------------------------------------------------------------


def dashboard(docs: list[Doc]) -> dict:
    cm = one(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (raw,) = cm["data"].values()
    return json.loads(raw)


def all_panels(dash: dict) -> list[dict]:
    return [p for p in dash["panels"] if p["type"] != "row"]


def test_dashboard_configmap(render: Renderer) -> None:
    assert not find(render(), "ConfigMap")
    docs = render("monitoring")
    dash = dashboard(docs)
    cm = one(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert cm["metadata"]["annotations"]["grafana_folder"] == "Models"
    assert dash["uid"] == "modelport-serving"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert variables >= {"datasource", "namespace", "job", "model_name", "model_version"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_shows_every_recording_rule(render: Renderer) -> None:
    docs = render("monitoring")
    exprs = " ".join(t["expr"] for p in all_panels(dashboard(docs)) for t in p["targets"])
    rule = one(docs, "PrometheusRule")
    records = {r["record"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}
    # The intermediate PSI steps are inputs of modelport:feature_psi:sum, not panels.
    internal = {
        "modelport:drift_bin_observations:increase",
        "modelport:drift_feature_observations:increase",
        "modelport:drift_reference_share:ratio",
        "modelport:drift_live_share:ratio",
    }
    missing = {r for r in records - internal if r not in exprs}
    assert not missing, f"recording rules without a panel: {sorted(missing)}"


def test_dashboard_versions_side_by_side(render: Renderer) -> None:
    panels = all_panels(dashboard(render("canary")))
    repeated = [p for p in panels if p.get("repeat") == "model_version"]
    assert len(repeated) >= 4
    assert all(p["repeatDirection"] == "h" for p in repeated)
    per_version = [p for p in panels if "model_version" in json.dumps(p["targets"])]
    assert len(per_version) == len(panels) - 2  # all but the two Kubernetes panels


def test_dashboard_queries_only_known_series(render: Renderer) -> None:
    """Every metric a panel queries exists: a recording rule, a service metric, or KSM."""
    docs = render("monitoring")
    rule = one(docs, "PrometheusRule")
    records = {r["record"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}
    service = {
        "modelport_requests_total",
        "modelport_batch_size_sum",
        "modelport_batch_size_count",
        "modelport_predictions_total",
        "modelport_prediction_value_bucket",
        "modelport_model_test_metric",
        "modelport_model_info",
    }
    ksm = {
        "kube_deployment_status_replicas_ready",
        "kube_deployment_status_replicas_unavailable",
        "kube_horizontalpodautoscaler_status_current_replicas",
        "kube_horizontalpodautoscaler_spec_max_replicas",
    }
    for panel in all_panels(dashboard(docs)):
        for target in panel["targets"]:
            names = set(re.findall(r"\b((?:modelport|kube)[a-z0-9_:]*)\s*\{", target["expr"]))
            assert names, target["expr"]
            assert names <= records | service | ksm, (panel["title"], names)
