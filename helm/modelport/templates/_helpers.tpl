{{/*
Chart name, truncated to 63 characters (the DNS label limit of some name fields).
*/}}
{{- define "modelport.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Truncated to 56 characters so that "-canary" still fits in 63.
If the release name contains the chart name it is used as is.
*/}}
{{- define "modelport.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Namespace of all resources.
*/}}
{{- define "modelport.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Chart name and version for the helm.sh/chart label.
*/}}
{{- define "modelport.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "modelport.labels" -}}
helm.sh/chart: {{ include "modelport.chart" . }}
{{ include "modelport.selectorLabels" . }}
app.kubernetes.io/version: {{ include "modelport.labelValue" (include "modelport.imageTag" (dict "root" . "tag" .Values.image.tag)) | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelport
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels shared by stable and canary pods, so one Service reaches both.
Each Deployment's own selector adds `track` to keep the two disjoint.
*/}}
{{- define "modelport.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelport.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
A string made safe as a label value: allowed characters only, at most 63, alphanumeric ends.
*/}}
{{- define "modelport.labelValue" -}}
{{- regexReplaceAll "[^A-Za-z0-9._-]" . "_" | trunc 63 | trimAll "._-" }}
{{- end }}

{{/*
Name of the ServiceAccount.
*/}}
{{- define "modelport.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelport.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image tag: the given tag or the chart appVersion. Args: dict root, tag.
*/}}
{{- define "modelport.imageTag" -}}
{{- default .root.Chart.AppVersion .tag }}
{{- end }}

{{/*
Image reference. Args: dict root, tag, digest. A digest pins the image and wins over the tag.
*/}}
{{- define "modelport.image" -}}
{{- if .digest }}
{{- printf "%s@%s" .root.Values.image.repository .digest }}
{{- else }}
{{- printf "%s:%s" .root.Values.image.repository (include "modelport.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Model version as shown in labels and the pod annotations: the configured one, or "image"
when the versions pinned in the image are served untouched (model.source=image, no
model.version): which ones, the image's bento says (docs/deploy.md).
*/}}
{{- define "modelport.modelVersion" -}}
{{- default "image" . }}
{{- end }}

{{/*
Whether the chart sets MODELPORT_MODELS. Args: dict root, version. Not when the image's own
pinned list is to be served as built (image source, no version, no extra models).
*/}}
{{- define "modelport.setsModels" -}}
{{- $v := .root.Values }}
{{- if or .version $v.model.extraModels (eq $v.model.source "registry") -}}
true
{{- end }}
{{- end }}

{{/*
MODELPORT_REGISTRY: s3://bucket[/prefix].
*/}}
{{- define "modelport.registryUrl" -}}
{{- printf "s3://%s/%s" .Values.registry.bucket (trimAll "/" .Values.registry.prefix) | trimSuffix "/" }}
{{- end }}

{{/*
Where the verification key is mounted, and the key file: MODELPORT_VERIFY_KEY. Empty when
no key is configured.
*/}}
{{- define "modelport.verifyKeyPath" -}}
{{- if or .Values.verifyKey.secretName .Values.verifyKey.configMapName }}
{{- printf "/etc/modelport/verify-key/%s" .Values.verifyKey.key }}
{{- end }}
{{- end }}

{{/*
MODELPORT_MODELS: the primary model tag, then any extra ones. Args: dict root, version.
*/}}
{{- define "modelport.modelTags" -}}
{{- $primary := .root.Values.model.name }}
{{- if .version }}
{{- $primary = printf "%s:%s" .root.Values.model.name .version }}
{{- end }}
{{- join "," (prepend .root.Values.model.extraModels $primary) }}
{{- end }}

{{/*
BENTOML_CONFIG_OVERRIDES as JSON: workers and request timeout from values, deep-merged
with bentoml.configOverrides (which wins).
*/}}
{{- define "modelport.bentomlConfig" -}}
{{- $base := dict "services" (dict "modelport" (dict "workers" (int .Values.bentoml.workers) "traffic" (dict "timeout" (int .Values.bentoml.requestTimeoutSeconds)))) }}
{{- $merged := mustMergeOverwrite $base (deepCopy .Values.bentoml.configOverrides) }}
{{- toJson $merged }}
{{- end }}

{{/*
True when an API is available: from the cluster (or --api-versions), or listed in
.Values.apiVersions so that `helm template` and GitOps tools can render it offline.
Args: dict root, api (e.g. "monitoring.coreos.com/v1/ServiceMonitor").
*/}}
{{- define "modelport.apiAvailable" -}}
{{- if or (.root.Capabilities.APIVersions.Has .api) (has .api .root.Values.apiVersions) -}}
true
{{- end }}
{{- end }}

{{/*
Label selector of this release's series in Prometheus: the ServiceMonitor's job is the
Service name.
*/}}
{{- define "modelport.promSelector" -}}
job="{{ include "modelport.fullname" . }}",namespace="{{ include "modelport.namespace" . }}"
{{- end }}

{{/*
"true" when the canary takes mirrored traffic only (canary.shadow.only): the main Service
then selects stable pods alone. dig: a release upgraded with --reuse-values may predate it.
*/}}
{{- define "modelport.shadowOnly" -}}
{{- $c := .Values.canary }}
{{- if and $c.enabled (dig "shadow" "enabled" false $c) (dig "shadow" "only" false $c) -}}
true
{{- end }}
{{- end }}

{{/*
Checks of combinations of values that the JSON schema cannot express.
*/}}
{{- define "modelport.validateValues" -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are mutually exclusive: KEDA creates its own HPA for the Deployment. Enable one of them (request-rate scaling: autoscaling.requestRate with prometheus-adapter, or keda)." }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail (printf "autoscaling.maxReplicas (%d) must be >= autoscaling.minReplicas (%d)" (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- end }}
{{- with .Values.autoscaling }}
{{- if and .enabled (not (or .targetCPUUtilizationPercentage .targetMemoryUtilizationPercentage .requestRate.enabled)) }}
{{- fail "autoscaling.enabled needs a metric: targetCPUUtilizationPercentage, targetMemoryUtilizationPercentage or requestRate.enabled" }}
{{- end }}
{{- end }}
{{- if and .Values.keda.enabled (lt (int .Values.keda.maxReplicas) (int .Values.keda.minReplicas)) }}
{{- fail (printf "keda.maxReplicas (%d) must be >= keda.minReplicas (%d)" (int .Values.keda.maxReplicas) (int .Values.keda.minReplicas)) }}
{{- end }}
{{- $drain := add .Values.preStopSleepSeconds .Values.bentoml.requestTimeoutSeconds }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $drain) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + bentoml.requestTimeoutSeconds (%d): otherwise in-flight requests are killed on shutdown" (int .Values.terminationGracePeriodSeconds) (int $drain)) }}
{{- end }}
{{- if and .Values.canary.enabled (not (or .Values.canary.image.tag .Values.canary.image.digest .Values.canary.model.version)) }}
{{- fail "canary.enabled needs canary.image.tag (or canary.image.digest) or canary.model.version: otherwise the canary is identical to the stable Deployment" }}
{{- end }}
{{- if and (dig "shadow" "only" false .Values.canary) (not (dig "shadow" "enabled" false .Values.canary)) }}
{{- fail "canary.shadow.only needs canary.shadow.enabled: a shadow-only canary's traffic is what stable mirrors to it" }}
{{- end }}
{{- if eq .Values.model.source "registry" }}
{{- if not .Values.model.version }}
{{- fail "model.source=registry needs model.version, an exact version: Helm cannot read the registry, so resolve an alias first (`modelport resolve NAME:production` prints NAME:VERSION) and the pod template names what the pods serve" }}
{{- end }}
{{- if not .Values.registry.bucket }}
{{- fail "model.source=registry needs registry.bucket (and registry.endpointUrl for a store other than AWS S3)" }}
{{- end }}
{{- range .Values.model.extraModels }}
{{- if not (contains ":" .) }}
{{- fail (printf "model.extraModels: %q needs an exact version (name:version) with model.source=registry" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.verifyKey.secretName .Values.verifyKey.configMapName }}
{{- fail "verifyKey: set either secretName or configMapName, not both" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (ne (toString .Values.podDisruptionBudget.minAvailable) "") (ne (toString .Values.podDisruptionBudget.maxUnavailable) "") }}
{{- fail "podDisruptionBudget: set either minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- end }}

{{/*
The preStop hook: `python -m modelport.drain` marks the pod as draining, then waits
preStopSleepSeconds (modelport/drain.py). As a JSON list for `exec.command`.
*/}}
{{- define "modelport.drainCommand" -}}
{{- toJson (list "python" "-m" "modelport.drain" "--seconds" (toString .Values.preStopSleepSeconds)) }}
{{- end }}

{{/*
Replicas of the stable Deployment under an autoscaler (HPA or KEDA). A fresh install starts
at the autoscaler's minimum (at least 1), so `helm install --wait` waits for all of them;
an upgrade repeats the live count, so it never takes replicas back from the autoscaler (and
never drops the field, which both Helm 3's three-way merge and Helm 4's server-side apply
would turn into the default of 1).
*/}}
{{- define "modelport.autoscaledReplicas" -}}
{{- $min := ternary .Values.autoscaling.minReplicas .Values.keda.minReplicas (eq (toString .Values.autoscaling.enabled) "true") }}
{{- $live := lookup "apps/v1" "Deployment" (include "modelport.namespace" .) (include "modelport.fullname" .) }}
{{- dig "spec" "replicas" (max 1 (int $min)) $live }}
{{- end }}
