{{- define "bitcoin-operator.fullname" -}}
{{- printf "%s" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bitcoin-operator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "bitcoin-operator.serviceAccountName" -}}
{{- default (include "bitcoin-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The Secret names the operator may read: the chart's own and the listed ones. */}}
{{- define "bitcoin-operator.readableSecrets" -}}
{{- $names := .Values.readableSecrets | default list -}}
{{- if .Values.rpcSecret.create -}}
{{- $names = append $names .Values.rpcSecret.name -}}
{{- end -}}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* The repositories networks may name in spec.image: bitcoind.image's and the listed ones. */}}
{{- define "bitcoin-operator.allowedImages" -}}
{{- $image := .Values.bitcoind.image | splitList "@" | first -}}
{{- $parts := $image | splitList ":" -}}
{{- $repository := $image -}}
{{- if and (gt (len $parts) 1) (not (contains "/" (last $parts))) -}}
{{- $repository = $parts | initial | join ":" -}}
{{- end -}}
{{- prepend (.Values.bitcoind.allowedImages | default list) $repository | uniq | join "," -}}
{{- end -}}
