{{- define "outpost.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "outpost.labels" -}}
app.kubernetes.io/name: outpost
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "outpost.selectorLabels" -}}
app.kubernetes.io/name: outpost
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "outpost.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "outpost.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "outpost.image" -}}
{{- printf "%s:%s" .repository (default $.appVersion .tag) -}}
{{- end -}}

{{- define "outpost.controldbSecret" -}}
{{- if .Values.controldb.enabled -}}
{{- printf "%s-controldb" (include "outpost.fullname" .) -}}
{{- else if .Values.controldb.existingSecret.name -}}
{{- .Values.controldb.existingSecret.name -}}
{{- else -}}
{{- printf "%s-controldb-url" (include "outpost.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- /*
outpost.watchNamespaces is the JSON list of namespaces the controller
watches; empty means every namespace. With rbac.secrets namespaced, an empty
watchNamespaces means the release namespace only: the controller cannot
manage instances where it may not keep their Secrets.
*/ -}}
{{- define "outpost.watchNamespaces" -}}
{{- if or .Values.watchNamespaces (eq .Values.rbac.secrets "cluster") -}}
{{- .Values.watchNamespaces | toJson -}}
{{- else -}}
{{- list .Release.Namespace | toJson -}}
{{- end -}}
{{- end -}}
