{{/*
Names are fixed rather than derived from the release: the operator binds the agents'
ClusterRoles by these names, its Lease is `sluice-operator`, and one cluster runs one Sluice.
*/}}

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels of the operator's pods; selectors use exactly these, the same as deploy/ (selectors
are immutable, so equal ones let Helm adopt a kustomize install's Deployment).
*/}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels of every object; never app.kubernetes.io/managed-by=sluice, which the operator prunes. */}}
{{- define "sluice.labels" -}}
{{ include "sluice.selectorLabels" . }}
{{ include "sluice.commonLabels" . }}
{{- end -}}

{{/* Labels of the agents' ClusterRoles and bindings: component agent, as in deploy/. */}}
{{- define "sluice.agentLabels" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/component: agent
{{ include "sluice.commonLabels" . }}
{{- end -}}

{{- define "sluice.commonLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "sluice.chart" . }}
{{- with .Values.extraLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- default "sluice-operator" .Values.serviceAccount.name -}}
{{- end -}}

{{/* The digest, when given, pins the image; the tag defaults to the chart's appVersion. */}}
{{- define "sluice.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The control namespaces, comma-separated: the release namespace unless listed. */}}
{{- define "sluice.controlNamespaces" -}}
{{- if .Values.controlNamespaces -}}
{{- join "," .Values.controlNamespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}


{{/*
Namespaces whose agents get the agents' ClusterRoleBindings, comma-separated: the control
namespaces (the release namespace when "*" or none are listed) and rbac.agentNamespaces.
*/}}
{{- define "sluice.agentNamespaces" -}}
{{- $listed := without (include "sluice.controlNamespaces" . | splitList ",") "*" -}}
{{- if not $listed -}}
{{- $listed = list .Release.Namespace -}}
{{- end -}}
{{- concat $listed .Values.rbac.agentNamespaces | uniq | join "," -}}
{{- end -}}
