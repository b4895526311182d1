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
    kubernetes.io/change-cause: {{ printf "model %s:%s (image %s)" $v.model.name $version $image | quote }}
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
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        modelport.io/model: {{ printf "%s:%s" $v.model.name $version | quote }}
        modelport.io/models: {{ include "modelport.modelTags" (dict "root" $root "version" .modelVersion) | quote }}
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
            - name: MODELPORT_MODELS
              value: {{ include "modelport.modelTags" (dict "root" $root "version" .modelVersion) | quote }}
            - name: BENTOML_CONFIG_OVERRIDES
              value: {{ include "modelport.bentomlConfig" $root | quote }}
            - name: BENTOML_PORT
              value: {{ $v.containerPort | quote }}
            - name: BENTOML_DO_NOT_TRACK
              value: {{ $v.bentoml.doNotTrack | quote }}
            - name: MODELPORT_KERAS_ARTIFACT
              value: {{ $v.serving.kerasArtifact | quote }}
            - name: MODELPORT_MONITORING
              value: {{ $v.serving.monitoring | quote }}
            - name: MODELPORT_DRIFT_FLUSH_SECONDS
              value: {{ $v.serving.driftFlushSeconds | quote }}
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
      volumes:
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
