{{/*
Fixed names: one install per cluster, and the admission policies match the ServiceAccounts
by name.
*/}}
{{- define "spillway-agent.agentName" -}}spillway-agent{{- end -}}
{{- define "spillway-agent.shimName" -}}spillway-virtual-node{{- end -}}
{{- define "spillway-agent.tenantRole" -}}spillway-agent-tenant{{- end -}}
{{- define "spillway-agent.shimConfigRole" -}}spillway-virtual-node-config{{- end -}}
{{/* Where tenant namespaces live: spillway-<origin cluster ID>. */}}
{{- define "spillway-agent.tenantPrefix" -}}spillway-{{- end -}}
{{/* Virtual nodes (and their Leases) are named spillway-<donor cluster ID>. */}}
{{- define "spillway-agent.virtualNodePrefix" -}}spillway-{{- end -}}

{{- define "spillway-agent.agentUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "spillway-agent.agentName" . }}
{{- end -}}
{{- define "spillway-agent.shimUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "spillway-agent.shimName" . }}
{{- end -}}

{{- define "spillway-agent.donorEnabled" -}}
{{- if .Values.role -}}{{ ternary "true" "" (has .Values.role (list "donor" "both")) }}
{{- else -}}{{ ternary "true" "" .Values.donor.enabled }}{{- end -}}
{{- end -}}
{{- define "spillway-agent.virtualNodeEnabled" -}}
{{- if .Values.role -}}{{ ternary "true" "" (has .Values.role (list "origin" "both")) }}
{{- else -}}{{ ternary "true" "" .Values.virtualNode.enabled }}{{- end -}}
{{- end -}}

{{- /* The guests' priority: donor.policy.guestPriority, else -1000 under reclaim=preempt and 0 under never (as the agent decides). */ -}}
{{- define "spillway-agent.guestPriority" -}}
{{- $p := .Values.donor.policy -}}
{{- if kindIs "invalid" $p.guestPriority -}}{{ ternary "0" "-1000" (eq $p.reclaim "never") }}
{{- else -}}{{ int64 $p.guestPriority }}{{- end -}}
{{- end -}}

{{- define "spillway-agent.labels" -}}
app.kubernetes.io/part-of: spillway
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.clusterId }}
spillway.io/cluster-id: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "spillway-agent.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "spillway-agent.validate" -}}
{{- if not .Values.broker.address -}}
{{- fail "broker.address is required: host:port of the broker's gRPC endpoint (e.g. spillway-broker.spillway-system.svc:7443 or broker.example.com:7443)" -}}
{{- end -}}
{{- if not (regexMatch "^[^:/ ]+:[0-9]{1,5}$" .Values.broker.address) -}}
{{- fail (printf "broker.address %q must be host:port" .Values.broker.address) -}}
{{- end -}}
{{- if and (eq .Values.donor.policy.reclaim "never") (lt (int64 (include "spillway-agent.guestPriority" .)) 0) -}}
{{- fail "donor.policy.guestPriority is below 0 with donor.policy.reclaim=never: pods without a PriorityClass (priority 0) would preempt guests" -}}
{{- end -}}
{{- if and (include "spillway-agent.virtualNodeEnabled" .) (not .Values.virtualNode.readConfigCluster) (eq .Values.virtualNode.offloadScope "all") (empty .Values.virtualNode.offloadNamespaces) -}}
{{- fail "virtualNode.offloadScope=all needs virtualNode.offloadNamespaces (namespaces whose ConfigMaps/Secrets the shim may read) or virtualNode.readConfigCluster=true" -}}
{{- end -}}
{{- end -}}
