{{/*
Expand the name of the chart.
*/}}
{{- define "edgemodel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A default fully qualified app name, at most 63 characters (some Kubernetes name fields
are limited to this by the DNS naming spec). A release name that already contains the
chart name is used as it is.
*/}}
{{- define "edgemodel.fullname" -}}
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
Chart name and version, as used by the chart label.
*/}}
{{- define "edgemodel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "edgemodel.labels" -}}
helm.sh/chart: {{ include "edgemodel.chart" . }}
{{ include "edgemodel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: edgemodel
{{- end }}

{{/*
Selector labels of the operator's Pods; never change them for an installed release.
*/}}
{{- define "edgemodel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edgemodel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "edgemodel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "edgemodel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator's image.
*/}}
{{- define "edgemodel.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The image of the runtime and trainer Pods the operator creates.
*/}}
{{- define "edgemodel.runtimeImage" -}}
{{- default (include "edgemodel.image" .) .Values.runtimeImage }}
{{- end }}

{{/*
The leader Lease's name.
*/}}
{{- define "edgemodel.leaseName" -}}
{{- default (include "edgemodel.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The Leases the operator holds, as a JSON list: the leader Lease itself with one shard,
else <leaseName>-shard-0 ... <leaseName>-shard-<shards - 1> (edgemodel_operator.shard).
*/}}
{{- define "edgemodel.leaseNames" -}}
{{- $base := include "edgemodel.leaseName" . -}}
{{- $shards := int .Values.shards -}}
{{- if eq $shards 1 -}}
{{- list $base | toJson -}}
{{- else -}}
{{- $names := list -}}
{{- range $i := until $shards }}{{ $names = append $names (printf "%s-shard-%d" $base $i) }}{{ end -}}
{{- $names | toJson -}}
{{- end -}}
{{- end }}

{{/*
Operator replicas: replicaCount, and at least one per shard.
*/}}
{{- define "edgemodel.replicas" -}}
{{- if and (gt (int .Values.shards) 1) (not .Values.leaderElection.enabled) -}}
{{- fail "shards > 1 needs leaderElection.enabled: each shard is held through its Lease" -}}
{{- end -}}
{{- max (int .Values.replicaCount) (int .Values.shards) -}}
{{- end }}

{{/*
The namespaces the operator watches, comma-separated: watchNamespace and watchNamespaces
together, without repeats. Empty: every namespace (cluster-wide mode).
*/}}
{{- define "edgemodel.watchNamespaces" -}}
{{- $namespaces := list -}}
{{- with .Values.watchNamespace }}{{ $namespaces = append $namespaces . }}{{ end -}}
{{- range .Values.watchNamespaces | default list }}{{ $namespaces = append $namespaces . }}{{ end -}}
{{- $namespaces | uniq | join "," -}}
{{- end }}

{{/*
The rules of files/operator-rules.yaml that belong in one place (.scope), as a YAML list:
"cluster" (cluster-scoped reads: CRDs, namespaces), "lease" (the leader Lease) or
"workload" (everything else: EdgeModels and the children the operator runs). A rule that
mixes scopes is refused, so a new rule can never widen a Role by accident.
*/}}
{{- define "edgemodel.rules" -}}
{{- $scope := .scope -}}
{{- $rules := list -}}
{{- range (.root.Files.Get "files/operator-rules.yaml" | fromYamlArray) -}}
{{- $kinds := list -}}
{{- range .resources -}}
{{- if eq . "leases" }}{{ $kinds = append $kinds "lease" }}
{{- else if has . (list "customresourcedefinitions" "namespaces") }}{{ $kinds = append $kinds "cluster" }}
{{- else }}{{ $kinds = append $kinds "workload" }}{{ end -}}
{{- end -}}
{{- if ne (len ($kinds | uniq)) 1 -}}
{{- fail (printf "files/operator-rules.yaml: the rule for %v mixes scopes; split it" .resources) -}}
{{- end -}}
{{- if eq (first $kinds) $scope }}{{ $rules = append $rules . }}{{ end -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end }}

{{/*
The operator's username as the API server sees it.
*/}}
{{- define "edgemodel.operatorUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "edgemodel.serviceAccountName" .) -}}
{{- end }}
