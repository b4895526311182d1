{{/*
One Deployment of the model server; stable and canary differ only in the arguments.
Args: dict root, name, track, replicas (absent: left to an autoscaler), tag, digest,
modelVersion.
*/}}
{{- define "modelport.deployment" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $version := include "modelport.modelVersion" .modelVersion }}
{{- $image := include "modelport.image" (dict "root" $root "tag" .tag "digest" .digest) }}
{{- $registry := eq $v.model.source "registry" }}
{{- $models := include "modelport.modelTags" (dict "root" $root "version" .modelVersion) }}
{{- $verifyKey := include "modelport.verifyKeyPath" $root }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  namespace: {{ include "modelport.namespace" $root }}
  labels:
    {{- include "modelport.labels" $root | nindent 4 }}
    track: {{ .track }}
  annotations:
    # `kubectl rollout history` shows this per revision: a model history.
    {{- /* Without a version (image source) the image says which versions it serves. */}}
    {{- if $registry }}
    kubernetes.io/change-cause: {{ printf "model %s:%s from registry %s (image %s)" $v.model.name $version (include "modelport.registryUrl" $root) $image | quote }}
    {{- else if .modelVersion }}
    kubernetes.io/change-cause: {{ printf "model %s:%s (image %s)" $v.model.name $version $image | quote }}
    {{- else }}
    kubernetes.io/change-cause: {{ printf "model %s as pinned in image %s" $v.model.name $image | quote }}
    {{- end }}
spec:
  {{- if hasKey . "replicas" }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: {{ $v.revisionHistoryLimit }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: {{ $v.rollingUpdate.maxSurge }}
      maxUnavailable: {{ $v.rollingUpdate.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "modelport.selectorLabels" $root | nindent 6 }}
      track: {{ .track }}
  template:
    metadata:
      labels:
        {{- include "modelport.selectorLabels" $root | nindent 8 }}
        track: {{ .track }}
        modelport.io/model-name: {{ include "modelport.labelValue" $v.model.name | quote }}
        modelport.io/model-version: {{ include "modelport.labelValue" $version | quote }}
        {{- if and (eq .track "stable") $v.canary.enabled (dig "shadow" "enabled" false $v.canary) }}
        {{- /* Shadow traffic goes stable -> canary: a client the NetworkPolicy admits. */}}
        {{ include "modelport.fullname" $root }}-client: "true"
        {{- end }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        modelport.io/model: {{ printf "%s:%s" $v.model.name $version | quote }}
        modelport.io/models: {{ $models | quote }}
        modelport.io/model-source: {{ $v.model.source | quote }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "modelport.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $v.automountServiceAccountToken }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- if $registry }}
      initContainers:
        # Pulls and verifies the exact versions into the models emptyDir (modelport/pull.py);
        # a failure is one log line and exit 2, so the pod never starts without its model.
        # The image's own models are copied alongside: `bentoml serve` checks that every
        # model its bento declares exists, though only MODELPORT_MODELS are served.
        - name: pull-model
          image: {{ $image }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          command:
            {{- toYaml (concat (list "python" "-m" "modelport.pull") (splitList "," $models) (list "--into" "/pull" "--bento-models" "/home/bentoml/bento/models")) | nindent 12 }}
          env:
            - name: MODELPORT_REGISTRY
              value: {{ include "modelport.registryUrl" $root | quote }}
            {{- with $v.registry.endpointUrl }}
            - name: MODELPORT_REGISTRY_ENDPOINT_URL
              value: {{ . | quote }}
            {{- end }}
            - name: MODELPORT_REGISTRY_TIMEOUT
              value: {{ $v.registry.timeoutSeconds | quote }}
            {{- with $v.registry.region }}
            - name: AWS_REGION
              value: {{ . | quote }}
            {{- end }}
            {{- with $verifyKey }}
            - name: MODELPORT_VERIFY_KEY
              value: {{ . | quote }}
            {{- end }}
            - name: PYTHONPATH
              value: /home/bentoml/bento/src
          {{- with $v.registry.credentialsSecret }}
          envFrom:
            - secretRef:
                name: {{ . }}
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          volumeMounts:
            - name: models
              mountPath: /pull
            {{- range $v.writableDirs }}
            - name: writable
              mountPath: {{ . }}
              subPath: {{ trimPrefix "/" . | replace "/" "-" }}
            {{- end }}
            {{- if $verifyKey }}
            - name: verify-key
              mountPath: /etc/modelport/verify-key
              readOnly: true
            {{- end }}
      {{- end }}
      containers:
        - name: modelport
          image: {{ $image }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          ports:
            - name: http
              containerPort: {{ $v.containerPort }}
              protocol: TCP
          env:
            {{- if include "modelport.setsModels" (dict "root" $root "version" .modelVersion) }}
            - name: MODELPORT_MODELS
              value: {{ $models | quote }}
            {{- end }}
            {{- with $verifyKey }}
            - name: MODELPORT_VERIFY_KEY
              value: {{ . | quote }}
            {{- end }}
            - name: BENTOML_CONFIG_OVERRIDES
              value: {{ include "modelport.bentomlConfig" $root | quote }}
            - name: BENTOML_PORT
              value: {{ $v.containerPort | quote }}
            - name: BENTOML_DO_NOT_TRACK
              value: {{ $v.bentoml.doNotTrack | quote }}
            - name: MODELPORT_KERAS_ARTIFACT
              value: {{ $v.serving.kerasArtifact | quote }}
            - name: MODELPORT_SKLEARN_ARTIFACT
              value: {{ $v.serving.sklearnArtifact | quote }}
            - name: MODELPORT_MONITORING
              value: {{ $v.serving.monitoring | quote }}
            - name: MODELPORT_DRIFT_FLUSH_SECONDS
              value: {{ $v.serving.driftFlushSeconds | quote }}
            - name: MODELPORT_EXPLAIN
              value: {{ $v.serving.explain.enabled | quote }}
            - name: MODELPORT_EXPLAIN_BUDGET_SECONDS
              value: {{ $v.serving.explain.budgetSeconds | quote }}
            - name: MODELPORT_EXPLAIN_MAX_ROWS
              value: {{ $v.serving.explain.maxRows | quote }}
            # The pod's role in the release: every modelport_* series carries it as `variant`.
            - name: MODELPORT_VARIANT
              value: {{ .track | quote }}
            {{- /* dig: a release upgraded with --reuse-values may predate canary.shadow. */}}
            {{- if and (eq .track "stable") $v.canary.enabled (dig "shadow" "enabled" false $v.canary) }}
            # Shadow traffic: a share of the answered requests mirrored to the canary Service.
            - name: MODELPORT_SHADOW_URL
              value: {{ printf "http://%s-canary:%v" (include "modelport.fullname" $root) $v.service.port | quote }}
            - name: MODELPORT_SHADOW_FRACTION
              value: {{ dig "shadow" "fraction" 0.1 $v.canary | quote }}
            - name: MODELPORT_SHADOW_QUEUE
              value: {{ dig "shadow" "queue" 256 $v.canary | quote }}
            - name: MODELPORT_SHADOW_TOLERANCE
              value: {{ dig "shadow" "tolerance" 0.01 $v.canary | quote }}
            {{- end }}
            # Shared by the preStop hook and the server: the pod's writable /tmp.
            - name: MODELPORT_DRAIN_FILE
              value: /tmp/modelport-draining
            # The bento's source dir, where `bentoml serve` finds it, so that the preStop
            # hook's `python -m modelport.drain` finds it too (exec runs in the image's WORKDIR).
            - name: PYTHONPATH
              value: /home/bentoml/bento/src
            {{- with $v.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with $v.envFrom }}
          envFrom:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          # Startup waits on /readyz (models loaded and self-tested) with a long timeout: the
          # server accepts the connection at once and answers when the models are in, so a
          # normal load passes on the first probe instead of logging failures. Readiness then
          # asks /livez, which draining does not turn 503: a normal stop logs no failures
          # either, and the terminating endpoint is out of the Service regardless.
          startupProbe:
            httpGet:
              path: {{ $v.startupProbe.path }}
              port: http
            initialDelaySeconds: {{ $v.startupProbe.initialDelaySeconds }}
            periodSeconds: {{ $v.startupProbe.periodSeconds }}
            timeoutSeconds: {{ $v.startupProbe.timeoutSeconds }}
            failureThreshold: {{ $v.startupProbe.failureThreshold }}
          readinessProbe:
            httpGet:
              path: {{ $v.readinessProbe.path }}
              port: http
            periodSeconds: {{ $v.readinessProbe.periodSeconds }}
            timeoutSeconds: {{ $v.readinessProbe.timeoutSeconds }}
            failureThreshold: {{ $v.readinessProbe.failureThreshold }}
            successThreshold: {{ $v.readinessProbe.successThreshold }}
          livenessProbe:
            httpGet:
              path: {{ $v.livenessProbe.path }}
              port: http
            periodSeconds: {{ $v.livenessProbe.periodSeconds }}
            timeoutSeconds: {{ $v.livenessProbe.timeoutSeconds }}
            failureThreshold: {{ $v.livenessProbe.failureThreshold }}
          lifecycle:
            preStop:
              # Mark the pod as draining (every response then says `Connection: close`, so
              # keep-alive clients reconnect to a live pod), then keep serving until the
              # endpoint removal has reached every proxy; only then does SIGTERM come.
              exec:
                command: {{ include "modelport.drainCommand" $root }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          volumeMounts:
            {{- range $v.writableDirs }}
            - name: writable
              mountPath: {{ . }}
              subPath: {{ trimPrefix "/" . | replace "/" "-" }}
            {{- end }}
            {{- if $registry }}
            # The pulled models replace the image's: the bento's own model store is where
            # `bentoml serve` looks (it ignores BENTOML_HOME/models when the bento has models).
            - name: models
              mountPath: /home/bentoml/bento/models
              subPath: models
              readOnly: true
            {{- end }}
            {{- if $verifyKey }}
            - name: verify-key
              mountPath: /etc/modelport/verify-key
              readOnly: true
            {{- end }}
      volumes:
        {{- if $registry }}
        - name: models
          emptyDir:
            {{- with $v.registry.volume.medium }}
            medium: {{ . }}
            {{- end }}
            {{- with $v.registry.volume.sizeLimit }}
            sizeLimit: {{ . }}
            {{- end }}
        {{- end }}
        {{- with $v.verifyKey.secretName }}
        - name: verify-key
          secret:
            secretName: {{ . }}
            items:
              - key: {{ $v.verifyKey.key }}
                path: {{ $v.verifyKey.key }}
        {{- end }}
        {{- with $v.verifyKey.configMapName }}
        - name: verify-key
          configMap:
            name: {{ . }}
            items:
              - key: {{ $v.verifyKey.key }}
                path: {{ $v.verifyKey.key }}
        {{- end }}
        - name: writable
          emptyDir:
            {{- with $v.writableVolume.medium }}
            medium: {{ . }}
            {{- end }}
            {{- with $v.writableVolume.sizeLimit }}
            sizeLimit: {{ . }}
            {{- end }}
      {{- if or $v.topologySpread.enabled $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- if $v.topologySpread.enabled }}
        - maxSkew: {{ $v.topologySpread.maxSkew }}
          topologyKey: {{ $v.topologySpread.topologyKey }}
          whenUnsatisfiable: {{ $v.topologySpread.whenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- include "modelport.selectorLabels" $root | nindent 14 }}
              track: {{ .track }}
          # Spread each ReplicaSet on its own, so a rollout's new pods spread too.
          matchLabelKeys:
            - pod-template-hash
        {{- end }}
        {{- with $v.topologySpreadConstraints }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
