{{/* Names, labels and the pod spec shared by the producer and the consumers. */}}

{{- define "bizon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bizon.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The object names, short enough for a CronJob (52 characters) and its Jobs' suffix. */}}
{{- define "bizon.producerName" -}}
{{- printf "%s-producer" (include "bizon.fullname" . | trunc 42 | trimSuffix "-") -}}
{{- end -}}

{{- define "bizon.consumerName" -}}
{{- printf "%s-consumer" (include "bizon.fullname" . | trunc 53 | trimSuffix "-") -}}
{{- end -}}

{{- define "bizon.secretName" -}}
{{- .Values.secret.existingSecret | default (include "bizon.fullname" .) -}}
{{- end -}}

{{- define "bizon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bizon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "bizon.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "bizon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
The config, parsed, after checks that keep the pods, the probes and the scrape consistent with
it. Fails the render (with the key to fix) rather than deploy pods whose probes can never pass.
*/}}
{{- define "bizon.config" -}}
{{- $cfg := fromYaml .Values.config -}}
{{- if hasKey $cfg "Error" -}}
{{- fail (printf "config: not valid YAML: %s" (get $cfg "Error")) -}}
{{- end -}}
{{- $mon := $cfg.monitoring | default dict -}}
{{- if ne (toString $mon.type) "prometheus" -}}
{{- fail "config: monitoring.type must be prometheus (the scrape and the liveness/readiness probes read its endpoint)" -}}
{{- end -}}
{{- $address := toString (($mon.config | default dict).address) -}}
{{- if not (hasSuffix (printf ":%v" .Values.metrics.port) $address) -}}
{{- fail (printf "config: monitoring.config.address must end with the port metrics.port (%v), got %q" .Values.metrics.port $address) -}}
{{- end -}}
{{- if or (hasPrefix "127." $address) (hasPrefix "localhost" $address) (hasPrefix "[::1]" $address) -}}
{{- fail (printf "config: monitoring.config.address %q listens on loopback only: the kubelet's probes and Prometheus come from outside the pod (use 0.0.0.0:%v)" $address .Values.metrics.port) -}}
{{- end -}}
{{- $queue := (($cfg.engine | default dict).queue | default dict) -}}
{{- if not (has (toString $queue.type) (list "rabbitmq" "kafka")) -}}
{{- fail "config: engine.queue.type must be rabbitmq or kafka: the producer and the consumers run in different pods" -}}
{{- end -}}
{{- toJson $cfg -}}
{{- end -}}

{{/* engine.queue.config.lanes of the config (1 without lanes). */}}
{{- define "bizon.lanes" -}}
{{- $cfg := include "bizon.config" . | fromJson -}}
{{- $lanes := ((($cfg.engine | default dict).queue | default dict).config | default dict).lanes | default 1 -}}
{{- int $lanes -}}
{{- end -}}

{{/* consumer.replicas, or the lanes (consumers beyond the lanes wait as standbys). */}}
{{- define "bizon.consumerReplicas" -}}
{{- $replicas := include "bizon.lanes" . | int -}}
{{- if not (kindIs "invalid" .Values.consumer.replicas) -}}
{{- $replicas = int .Values.consumer.replicas -}}
{{- end -}}
{{- $replicas -}}
{{- end -}}

{{/*
The pod spec of one role: `dict "root" $ "role" "producer"|"consumer" "values" <role values>`.
*/}}
{{- define "bizon.podSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $role := .values -}}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .role }}
    image: "{{ $v.image.repository }}:{{ $v.image.tag | default $root.Chart.AppVersion }}"
    imagePullPolicy: {{ $v.image.pullPolicy }}
    command:
      {{- toYaml $v.image.command | nindent 6 }}
    args:
      - run
      - /config/pipeline.yml
      - --role
      - {{ .role }}
      - --no-progress
      - --log-format
      - {{ $v.logFormat }}
      - --log-level
      - {{ $v.logLevel }}
      {{- range $role.extraArgs }}
      - {{ . | quote }}
      {{- end }}
    workingDir: {{ $v.workDir }}
    envFrom:
      - secretRef:
          name: {{ include "bizon.secretName" $root }}
    {{- with $v.extraEnv }}
    env:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    ports:
      - name: metrics
        containerPort: {{ $v.metrics.port }}
        protocol: TCP
    livenessProbe:
      httpGet:
        path: /healthz
        port: metrics
      {{- toYaml $v.probes.liveness | nindent 6 }}
    readinessProbe:
      httpGet:
        path: /readyz
        port: metrics
      {{- toYaml $v.probes.readiness | nindent 6 }}
    resources:
      {{- toYaml $role.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    volumeMounts:
      - name: config
        mountPath: /config
        readOnly: true
      - name: work
        mountPath: {{ $v.workDir }}
      - name: tmp
        mountPath: /tmp
volumes:
  - name: config
    configMap:
      name: {{ include "bizon.fullname" $root }}
  - name: work
    emptyDir: {}
  - name: tmp
    emptyDir: {}
{{- end -}}

{{/* The pod template's metadata of one role (same argument as bizon.podSpec). */}}
{{- define "bizon.podMetadata" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
labels:
  {{- include "bizon.selectorLabels" $root | nindent 2 }}
  app.kubernetes.io/component: {{ .role }}
  {{- with $v.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  # a changed config or secret rolls the pods
  checksum/config: {{ $v.config | sha256sum }}
  {{- if not $v.secret.existingSecret }}
  checksum/secret: {{ toJson $v.secret.env | sha256sum }}
  {{- end }}
  {{- if $v.metrics.annotations }}
  prometheus.io/scrape: "true"
  prometheus.io/port: {{ $v.metrics.port | quote }}
  prometheus.io/path: {{ $v.metrics.path | quote }}
  {{- end }}
  {{- with .values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}
