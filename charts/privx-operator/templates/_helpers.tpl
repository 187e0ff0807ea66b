{{/*
The chart name, overridable with nameOverride.
*/}}
{{- define "privx-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified name of the release's objects (63 characters at most: a DNS label).
*/}}
{{- define "privx-operator.fullname" -}}
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
{{- define "privx-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "privx-operator.labels" -}}
helm.sh/chart: {{ include "privx-operator.chart" . }}
{{ include "privx-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: privx-operator
{{- end }}

{{/*
Labels that select the operator's pods (immutable in the Deployment: never add to them).
*/}}
{{- define "privx-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "privx-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "privx-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "privx-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The container image: repository@digest when a digest is given, else repository:tag.
*/}}
{{- define "privx-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
"true" when leader election is on: as set, or (when unset) exactly when replicaCount > 1.
*/}}
{{- define "privx-operator.leaderElection" -}}
{{- if kindIs "bool" .Values.leaderElection.enabled }}
{{- .Values.leaderElection.enabled }}
{{- else }}
{{- gt (int .Values.replicaCount) 1 }}
{{- end }}
{{- end }}

{{/*
The Lease name.
*/}}
{{- define "privx-operator.leaseName" -}}
{{- default (printf "%s-leader" (include "privx-operator.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The HMAC key Secret's name.
*/}}
{{- define "privx-operator.hmacSecretName" -}}
{{- default (printf "%s-hmac" (include "privx-operator.fullname" .)) .Values.hmacSecretName }}
{{- end }}

{{/*
The Secret holding the PrivX API client credentials.
*/}}
{{- define "privx-operator.credentialsSecretName" -}}
{{- default (printf "%s-privx-credentials" (include "privx-operator.fullname" .)) .Values.privx.credentials.existingSecret }}
{{- end }}

{{/*
"true" when a CA bundle is configured (from any source).
*/}}
{{- define "privx-operator.hasCA" -}}
{{- if or .Values.privx.ca.pem .Values.privx.ca.existingConfigMap .Values.privx.ca.existingSecret }}true{{ else }}false{{ end }}
{{- end }}

{{/*
The ConfigMap the chart creates from privx.ca.pem.
*/}}
{{- define "privx-operator.caConfigMapName" -}}
{{- printf "%s-privx-ca" (include "privx-operator.fullname" .) }}
{{- end }}

{{/*
Checks of value combinations, repeated from values.schema.json for installs that skip schema
validation. Renders nothing; fails the render with a message naming the values at fault.
*/}}
{{/* The --privx-auth-mode value of privx.auth.mode. */}}
{{- define "privx-operator.authModeFlag" -}}
{{- $modes := dict "password" "password" "serviceAccountToken" "service-account-token" "signedJwt" "signed-jwt" -}}
{{- get $modes .Values.privx.auth.mode -}}
{{- end }}

{{- define "privx-operator.validate" -}}
{{- $auth := .Values.privx.auth }}
{{- $repository := .Values.image.repository }}
{{- if not $repository }}
{{- fail "image.repository is required: the registry and path your cluster pulls the operator image from, e.g. registry.example.com/privx-operator (build it from the Dockerfile)" }}
{{- else if or (eq (len (splitList "/" $repository)) 1) (not (regexMatch "^(localhost|[^/]*[.:][^/]*)$" (index (splitList "/" $repository) 0))) }}
{{- fail (printf "image.repository %q names no registry host: give the registry your cluster pulls from, e.g. registry.example.com/%s (docker.io/... for Docker Hub); without one the pod would fail later with ImagePullBackOff" $repository $repository) }}
{{- end }}
{{- if and (ne $auth.mode "password") (or .Values.privx.credentials.create .Values.privx.credentials.existingSecret) }}
{{- fail (printf "privx.credentials are for privx.auth.mode password; mode %s uses no static credentials" $auth.mode) }}
{{- end }}
{{- if eq $auth.mode "signedJwt" }}
{{- if not $auth.signedJwt.existingSecret }}
{{- fail "privx.auth.mode signedJwt needs privx.auth.signedJwt.existingSecret (the Secret with the private key)" }}
{{- end }}
{{- if not $auth.signedJwt.issuer }}
{{- fail "privx.auth.mode signedJwt needs privx.auth.signedJwt.issuer" }}
{{- end }}
{{- if not $auth.signedJwt.subject }}
{{- fail "privx.auth.mode signedJwt needs privx.auth.signedJwt.subject (the PrivX user)" }}
{{- end }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (ne (include "privx-operator.leaderElection" .) "true") }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: without a Lease every replica would write to PrivX" }}
{{- end }}
{{- if and .Values.privx.credentials.create .Values.privx.credentials.existingSecret }}
{{- fail "privx.credentials: set either existingSecret or create, not both" }}
{{- end }}
{{- $caSources := 0 }}
{{- range (list .Values.privx.ca.pem .Values.privx.ca.existingConfigMap .Values.privx.ca.existingSecret) }}
{{- if . }}{{ $caSources = add1 $caSources }}{{ end }}
{{- end }}
{{- if gt $caSources 1 }}
{{- fail "privx.ca: set at most one of pem, existingConfigMap and existingSecret" }}
{{- end }}
{{- if and .Values.privx.ca.only (eq $caSources 0) }}
{{- fail "privx.ca.only needs a CA bundle (privx.ca.pem, existingConfigMap or existingSecret)" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (or (empty .Values.networkPolicy.apiServer.cidrs) (empty .Values.networkPolicy.privx.cidrs)) }}
{{- fail "networkPolicy.enabled needs networkPolicy.apiServer.cidrs and networkPolicy.privx.cidrs (a NetworkPolicy cannot name hosts)" }}
{{- end }}
{{- end }}

{{/*
Labels of the CRDs: those of every object without the instance's selector labels (the CRDs
are shared by the cluster, not part of one operator's pods).
*/}}
{{- define "privx-operator.crdLabels" -}}
helm.sh/chart: {{ include "privx-operator.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: privx-operator
{{- end }}

{{/*
Labels of hook and test pods (and their RBAC): the release's labels without
app.kubernetes.io/name, so that neither the metrics Service, the NetworkPolicy nor the
PodDisruptionBudget of the operator selects them.
*/}}
{{- define "privx-operator.hookLabels" -}}
helm.sh/chart: {{ include "privx-operator.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: privx-operator
{{- end }}

{{/*
PromQL label matchers of this release's metrics: the job the ServiceMonitor (or any scrape of
the metrics Service) gives them, and the release namespace.
*/}}
{{- define "privx-operator.metricsSelector" -}}
{{- printf "job=\"%s-metrics\", namespace=\"%s\"" (include "privx-operator.fullname" .) .Release.Namespace }}
{{- end }}
