{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "slack-token-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name used for objects: the release name, prefixed to the chart name unless
it already contains it. Truncated to 63 characters (DNS label limit).
*/}}
{{- define "slack-token-operator.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "slack-token-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "slack-token-operator.labels" -}}
helm.sh/chart: {{ include "slack-token-operator.chart" . }}
{{ include "slack-token-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: slack-token-operator
{{- end }}

{{/*
Selector labels: stable across upgrades, so never the version.
*/}}
{{- define "slack-token-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slack-token-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "slack-token-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "slack-token-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image reference: a digest wins over the tag; the tag defaults to appVersion.
*/}}
{{- define "slack-token-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Leader election is on exactly when more than one replica runs.
Returns "true" or "" (empty is false in templates).
*/}}
{{- define "slack-token-operator.leaderElect" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/*
The name of the Lease the operator uses for leader election (fixed in the binary).
*/}}
{{- define "slack-token-operator.leaseName" -}}
{{- $selector := .Values.selector | default "" | nospace -}}
{{- if $selector -}}
{{- /* As `leader::lease_name` in the operator: readable part, then a hash of the selector. */ -}}
{{- $readable := regexReplaceAll "[^a-z0-9]+" (lower $selector) "-" | trimPrefix "-" | trunc 30 | trimSuffix "-" -}}
{{- $hash := sha256sum $selector | trunc 8 -}}
{{- if $readable -}}
slack-token-operator-{{ $readable }}-{{ $hash }}
{{- else -}}
slack-token-operator-{{ $hash }}
{{- end -}}
{{- else -}}
slack-token-operator
{{- end -}}
{{- end }}

{{/*
Namespaced rules the operator needs wherever it watches SlackTokens: read the
SlackTokens, write their status and finalizers, manage the output Secrets and
read the credentials Secrets, and record Events. Used by the ClusterRole
(cluster-wide mode) and by each per-namespace Role (namespaced mode).
*/}}
{{- define "slack-token-operator.watchRules" -}}
- apiGroups: ["slack.rotator.dev"]
  resources: ["slacktokens"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["slack.rotator.dev"]
  resources: ["slacktokens/status"]
  verbs: ["patch"]
- apiGroups: ["slack.rotator.dev"]
  resources: ["slacktokens/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.rolloutRestart.enabled }}
# spec.rolloutRestartTargets: one pod-template patch per workload, as kubectl rollout restart makes.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["patch"]
{{- end }}
{{- end }}
