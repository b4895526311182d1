#!/usr/bin/env bash
# Renders the plain manifests under k8s/ from the Helm chart, so that kubectl and kustomize
# users get exactly what `helm install` would create (the chart is the only source).
# tests/chart/test_manifests.py re-renders them and fails when the committed files drift.
#
# Usage: hack/gen-manifests.sh [OUT_DIR]    (default: k8s; run via `make manifests`)
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-k8s}"
helm="${HELM:-helm}"
chart=helm/modelport
release=modelport
namespace=modelport
header="# Generated from $chart by hack/gen-manifests.sh (make manifests). Do not edit."

# image.tag=latest: the tag `make image` gives the image it builds (IMG=modelport:latest).
render() {
  "$helm" template "$release" "$chart" --namespace "$namespace" --skip-tests \
    --set image.tag=latest "$@"
}

mkdir -p "$out/base" "$out/monitoring"

# The application: chart defaults, plus the namespace labelled for Pod Security "restricted".
{
  echo "$header"
  cat <<YAML
---
apiVersion: v1
kind: Namespace
metadata:
  name: $namespace
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/warn: restricted
YAML
  render
} >"$out/base/modelport.yaml"

cat >"$out/base/kustomization.yaml" <<YAML
$header
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - modelport.yaml
YAML

# Monitoring for clusters with the Prometheus Operator: ServiceMonitor, PrometheusRule and
# the Grafana dashboard ConfigMap, applied on top of base.
{
  echo "$header"
  render \
    --api-versions monitoring.coreos.com/v1/ServiceMonitor \
    --api-versions monitoring.coreos.com/v1/PrometheusRule \
    --set dashboard.enabled=true \
    --show-only templates/servicemonitor.yaml \
    --show-only templates/prometheusrule.yaml \
    --show-only templates/dashboard-configmap.yaml
} >"$out/monitoring/monitoring.yaml"

cat >"$out/monitoring/kustomization.yaml" <<YAML
$header
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - monitoring.yaml
YAML

echo "gen-manifests: wrote $out/base and $out/monitoring"
