{{/* Names and labels shared by every template. */}}
{{- define "ecowatt.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "ecowatt.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ecowatt
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ecowatt.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "ecowatt.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "ecowatt.secretName" -}}
{{ .Values.secrets.existingSecret | default (printf "%s-secrets" (include "ecowatt.fullname" .)) }}
{{- end -}}

{{/* Environment of every EcoWatt container: the shared ConfigMap and the secrets. */}}
{{- define "ecowatt.env" -}}
- name: ECOWATT_DATABASE_URL
  valueFrom: {secretKeyRef: {name: {{ include "ecowatt.secretName" . }}, key: DATABASE_URL}}
- name: ECOWATT_REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ include "ecowatt.secretName" . }}, key: REDIS_URL}}
- name: ECOWATT_IDENTITY_PUBLIC_KEY
  valueFrom: {secretKeyRef: {name: {{ include "ecowatt.secretName" . }}, key: IDENTITY_PUBLIC_KEY}}
{{- if .Values.kafka.saslMechanism }}
- name: ECOWATT_KAFKA_SASL_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ include "ecowatt.secretName" . }}, key: KAFKA_SASL_PASSWORD}}
{{- end }}
{{- end -}}

{{- define "ecowatt.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Base URLs of every service not in .skip, `http://<fullname>-<name>:<port>` (each
service's own port): a JSON object name → URL (the gateway's upstreams), or with .pairs
`name=url,…` (ops). */}}
{{- define "ecowatt.serviceUrls" -}}
{{- $root := .root -}}
{{- $skip := .skip -}}
{{- $urls := dict -}}
{{- range $name, $svc := $root.Values.services -}}
{{- if not (has $name $skip) -}}
{{- $_ := set $urls $name (printf "http://%s-%s:%v" (include "ecowatt.fullname" $root) $name $svc.port) -}}
{{- end -}}
{{- end -}}
{{- if .pairs -}}
{{- $items := list -}}
{{- range $name, $url := $urls -}}
{{- $items = append $items (printf "%s=%s" $name $url) -}}
{{- end -}}
{{- join "," $items -}}
{{- else -}}
{{- toJson $urls -}}
{{- end -}}
{{- end -}}
