{{/* The release's full name: <release>-strom-operator, or the release name if it already says so. */}}
{{- define "strom-operator.fullname" -}}
{{- if contains "strom-operator" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-strom-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object of the chart. */}}
{{- define "strom-operator.labels" -}}
app.kubernetes.io/name: strom-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels that select the operator's pods. */}}
{{- define "strom-operator.selectorLabels" -}}
app.kubernetes.io/name: strom-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "strom-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "strom-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Role for a watched namespace, ClusterRole for all of them. */}}
{{- define "strom-operator.roleKind" -}}
{{- if .Values.watchNamespace -}}Role{{- else -}}ClusterRole{{- end -}}
{{- end -}}
