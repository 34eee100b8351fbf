{{/* Names: the release's full name, capped at 63 characters (a DNS label). */}}
{{- define "spillway-broker.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "spillway-broker.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "spillway-broker.labels" -}}
{{ include "spillway-broker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: spillway
app.kubernetes.io/component: broker
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "spillway-broker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "spillway-broker.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "spillway-broker.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
Checks that the JSON schema cannot express: they fail the render with one line that says
what to change.
*/}}
{{- define "spillway-broker.validate" -}}
{{- $replicas := int .Values.replicaCount -}}
{{- if and (gt $replicas 1) (eq .Values.store.type "sqlite") -}}
{{- fail (printf "replicaCount=%d needs store.type=redis: the embedded SQLite store serves exactly one broker (set store.type=redis and store.redis.url or store.redis.existingSecret, or replicaCount=1)" $replicas) -}}
{{- end -}}
{{- if and (eq .Values.store.type "redis") (not .Values.store.redis.url) (not .Values.store.redis.existingSecret) -}}
{{- fail "store.type=redis needs store.redis.existingSecret (a Secret holding the Redis URL) or store.redis.url" -}}
{{- end -}}
{{- if not .Values.pki.existingSecret -}}
{{- fail "pki.existingSecret is required: create it from the files of `spillctl broker init` (ca.crt, ca.key, server.crt, server.key, api-tokens.json), see docs/install.md" -}}
{{- end -}}
{{- end -}}
