{{/* Names, labels and the few values derived from several others. */}}

{{- define "kubeml.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubeml.fullname" -}}
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

{{- define "kubeml.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "kubeml.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubeml
{{- end -}}

{{- define "kubeml.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubeml.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubeml.operatorSelectorLabels" -}}
{{ include "kubeml.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kubeml.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubeml.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubeml.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "kubeml.runtimeImage" -}}
{{- printf "%s:%s" .Values.runtimeImage.repository (default .Chart.AppVersion .Values.runtimeImage.tag) -}}
{{- end -}}

{{- define "kubeml.minio.fullname" -}}
{{- printf "%s-minio" (include "kubeml.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The S3 endpoint: explicit, else the in-chart MinIO's Service, else AWS. */}}
{{- define "kubeml.s3.endpoint" -}}
{{- if .Values.s3.endpoint -}}
{{- .Values.s3.endpoint -}}
{{- else if .Values.minio.enabled -}}
{{- printf "http://%s.%s.svc:%v" (include "kubeml.minio.fullname" .) .Release.Namespace .Values.minio.service.port -}}
{{- end -}}
{{- end -}}

{{/* Whether the chart writes the S3 credentials Secret(s). */}}
{{- define "kubeml.s3.createSecret" -}}
{{- if or .Values.s3.credentials.create .Values.minio.enabled -}}true{{- end -}}
{{- end -}}

{{- define "kubeml.s3.accessKeyId" -}}
{{- if .Values.s3.credentials.accessKeyId -}}
{{- .Values.s3.credentials.accessKeyId -}}
{{- else if .Values.minio.enabled -}}
{{- .Values.minio.rootUser -}}
{{- else -}}
{{- fail "s3.credentials.create needs s3.credentials.accessKeyId (or minio.enabled)" -}}
{{- end -}}
{{- end -}}

{{- define "kubeml.s3.secretAccessKey" -}}
{{- if .Values.s3.credentials.secretAccessKey -}}
{{- .Values.s3.credentials.secretAccessKey -}}
{{- else if .Values.minio.enabled -}}
{{- required "minio.enabled needs minio.rootPassword" .Values.minio.rootPassword -}}
{{- else -}}
{{- fail "s3.credentials.create needs s3.credentials.secretAccessKey (or minio.enabled)" -}}
{{- end -}}
{{- end -}}

{{/* Namespaces that get a copy of the S3 Secret, besides the release's own. */}}
{{- define "kubeml.s3.secretNamespaces" -}}
{{- $ns := .Values.s3.credentials.namespaces | default .Values.watchNamespaces -}}
{{- without (uniq $ns) .Release.Namespace | toJson -}}
{{- end -}}

{{/* Pod Security "restricted" for every pod of the chart. */}}
{{- define "kubeml.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kubeml.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* S3 settings as container env; credentials only by secretKeyRef. */}}
{{- define "kubeml.s3.env" -}}
- name: KUBEML_BUCKET
  value: {{ .Values.s3.bucket | quote }}
- name: AWS_REGION
  value: {{ .Values.s3.region | quote }}
- name: KUBEML_S3_VERIFY
  value: {{ ternary "true" "false" .Values.s3.verify | quote }}
{{- with include "kubeml.s3.endpoint" . }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
- name: KUBEML_S3_SECRET
  value: {{ .Values.s3.credentials.secretName | quote }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.credentials.secretName }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.credentials.secretName }}
      key: AWS_SECRET_ACCESS_KEY
{{- end -}}
