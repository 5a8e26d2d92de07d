{{/* The chart's name, overridable. */}}
{{- define "promfed.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name alone when it already holds the chart's. */}}
{{- define "promfed.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "promfed.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "promfed.selectorLabels" -}}
app.kubernetes.io/name: {{ include "promfed.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "promfed.labels" -}}
helm.sh/chart: {{ include "promfed.chart" . }}
{{ include "promfed.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "promfed.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "promfed.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* promfed.yaml: the values' config with `listen` set from containerPort
and, when redis.address is set, the cache stored in that Redis. */}}
{{- define "promfed.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%v" .Values.containerPort) }}
{{- if .Values.redis.address }}
{{- $cache := default (dict) (get $cfg "cache") }}
{{- $redis := default (dict) (get $cache "redis") }}
{{- $_ := set $redis "url" (printf "redis://%s" .Values.redis.address) }}
{{- $_ := set $cache "redis" $redis }}
{{- $_ := set $cache "store" "redis" }}
{{- $_ := set $cfg "cache" $cache }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}
