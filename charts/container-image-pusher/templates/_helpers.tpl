{{/* The chart's name, and the release's full name (63 characters at most). */}}
{{- define "cip.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cip.fullname" -}}
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

{{/* A derived name: the full name and a suffix, within 63 characters. */}}
{{- define "cip.suffixed" -}}
{{- printf "%s-%s" (include "cip.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix -}}
{{- end -}}

{{- define "cip.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cip.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cip.labels" -}}
{{ include "cip.selectorLabels" . }}
app.kubernetes.io/part-of: container-image-pusher
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "cip.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cip.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required with serviceAccount.create=false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cip.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Leader election: a Deployment with more than one replica. */}}
{{- define "cip.ha" -}}
{{- if and (eq .Values.mode "deployment") (gt (int .Values.replicas) 1) -}}true{{- end -}}
{{- end -}}

{{/* The auth Secret's name: the user's, or the one the chart creates. */}}
{{- define "cip.authSecret" -}}
{{- default (include "cip.suffixed" (dict "root" . "suffix" "remote-write")) .Values.remoteWrite.auth.existingSecret -}}
{{- end -}}

{{- define "cip.dockerConfigSecret" -}}
{{- default (include "cip.suffixed" (dict "root" . "suffix" "docker-config")) .Values.registry.dockerConfig.existingSecret -}}
{{- end -}}

{{- define "cip.remoteWriteConfigSecret" -}}
{{- default (include "cip.suffixed" (dict "root" . "suffix" "remote-write-config")) .Values.remoteWrite.config.existingSecret -}}
{{- end -}}

{{/* Workload kinds: preset -> API group and resource, for the ClusterRole. */}}
{{- define "cip.presetRules" -}}
argo-rollouts: {group: argoproj.io, resource: rollouts}
knative-serving: {group: serving.knative.dev, resource: services}
keda-scaledjob: {group: keda.sh, resource: scaledjobs}
openkruise-cloneset: {group: apps.kruise.io, resource: clonesets}
replicaset: {group: apps, resource: replicasets}
replicationcontroller: {group: "", resource: replicationcontrollers}
{{- end -}}

{{/* The pusher's arguments, one flag each; their values all come from values.yaml. */}}
{{- define "cip.args" -}}
{{- $v := .Values -}}
- {{ printf "--pull-secrets=%v" $v.registry.pullSecrets | quote }}
{{- if eq $v.mode "cronjob" }}
- --once
{{- else }}
- {{ printf "--interval=%v" $v.interval | quote }}
{{- end }}
{{- if $v.registry.dockerConfig.enabled }}
- --docker-config=/etc/container-image-pusher/docker/config.json
{{- end }}
- {{ printf "--log-format=%v" $v.logFormat | quote }}
{{- if eq $v.mode "deployment" }}
- --metrics-address=0.0.0.0:{{ $v.service.metricsPort }}
- --telemetry-address=0.0.0.0:{{ $v.service.telemetryPort }}
{{- end }}
{{- if $v.logLevel }}
- {{ printf "--log-level=%v" $v.logLevel | quote }}
{{- end }}
{{- if $v.job }}
- {{ printf "--job=%v" $v.job | quote }}
{{- end }}
{{- if $v.remoteWrite.protocol }}
- {{ printf "--remote-write-protocol=%v" $v.remoteWrite.protocol | quote }}
{{- end }}
{{- range $v.remoteWrite.otlpUrls }}
- {{ printf "--otlp-url=%v" . | quote }}
{{- end }}
{{- range $name, $value := $v.remoteWrite.headers }}
- {{ printf "--remote-write-header=%s: %v" $name $value | quote }}
{{- end }}
{{- if eq $v.remoteWrite.auth.type "basic" }}
- --remote-write-username=$(REMOTE_WRITE_USERNAME)
- --remote-write-password-file=/etc/container-image-pusher/remote-write/password
{{- else if eq $v.remoteWrite.auth.type "bearer" }}
- --remote-write-bearer-token-file=/etc/container-image-pusher/remote-write/bearer-token
{{- end }}
{{- with $v.remoteWrite.tls }}
{{- if and .existingSecret .caKey }}
- --remote-write-ca-file=/etc/container-image-pusher/tls/ca.crt
{{- end }}
{{- if and .existingSecret .certKey }}
- --remote-write-cert-file=/etc/container-image-pusher/tls/tls.crt
{{- end }}
{{- if and .existingSecret .keyKey }}
- --remote-write-key-file=/etc/container-image-pusher/tls/tls.key
{{- end }}
{{- if .insecureSkipVerify }}
- --remote-write-insecure-skip-verify
{{- end }}
{{- end }}
{{- if or $v.remoteWrite.config.inline $v.remoteWrite.config.existingSecret }}
- --remote-write-config=/etc/container-image-pusher/config/remote-write.yaml
{{- end }}
{{- if include "cip.cache" . }}
- --cache-dir=/var/cache/container-image-pusher
{{- if ne (int64 $v.registry.cache.maxBytes) 67108864 }}
- {{ printf "--cache-dir-max-bytes=%d" (int64 $v.registry.cache.maxBytes) | quote }}
{{- end }}
{{- end }}
{{- if include "cip.ha" . }}
- --leader-election
- {{ printf "--lease-name=%v" (default (include "cip.fullname" .) $v.leaderElection.leaseName) | quote }}
{{- end }}
{{- range $v.workloadKinds.presets }}
- {{ printf "--workload-kind=%v" . | quote }}
{{- end }}
{{- range $v.workloadKinds.custom }}
- {{ printf "--workload-kind=%v" .spec | quote }}
{{- end }}
{{- range $v.filters.namespaces }}
- {{ printf "--namespace=%v" . | quote }}
{{- end }}
{{- range $v.filters.excludeNamespaces }}
- {{ printf "--exclude-namespace=%v" . | quote }}
{{- end }}
{{- if $v.filters.selector }}
- {{ printf "--selector=%v" $v.filters.selector | quote }}
{{- end }}
{{- range $v.filters.excludeImages }}
- {{ printf "--exclude-image=%v" . | quote }}
{{- end }}
{{- range $v.ownership.workloadLabels }}
- {{ printf "--workload-labels=%v" . | quote }}
{{- end }}
{{- range $v.ownership.workloadAnnotations }}
- {{ printf "--workload-annotations=%v" . | quote }}
{{- end }}
{{- range $v.ownership.imageLabels }}
- {{ printf "--image-labels=%v" . | quote }}
{{- end }}
{{- range $v.ownership.imageAnnotations }}
- {{ printf "--image-annotations=%v" . | quote }}
{{- end }}
{{- with $v.versions }}
{{- if not .enabled }}
- --versions=false
{{- else }}
{{- if .cacheDuration }}
- {{ printf "--versions-cache-duration=%v" .cacheDuration | quote }}
{{- end }}
{{- range .include }}
- {{ printf "--versions-include=%v" . | quote }}
{{- end }}
{{- range .exclude }}
- {{ printf "--versions-exclude=%v" . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- $verify := "/etc/container-image-pusher/verify" }}
{{- range $v.verification.keys }}
{{- $policy := .name }}
{{- range .files }}
- {{ printf "--verify-key=%s=%s/%s" $policy $verify . | quote }}
{{- end }}
{{- end }}
{{- range $v.verification.certificates }}
{{- $subject := ternary (printf "subject=%s" (.subject | default "")) (printf "subject-regexp=%s" (.subjectRegexp | default "")) (hasKey . "subject") }}
- {{ printf "--verify-certificate=%s=issuer=%s,%s,roots=%s/%s" .name .issuer $subject $verify .rootsFile | quote }}
{{- end }}
{{- range $v.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}


{{/* Whether signature verification has policies, hence files to mount. */}}
{{- define "cip.verification" -}}
{{- with .Values.verification }}{{ if or .keys .certificates }}true{{ end }}{{ end -}}
{{- end -}}

{{- define "cip.verificationConfigMap" -}}
{{- .Values.verification.existingConfigMap | default (printf "%s-verification" (include "cip.fullname" .)) -}}
{{- end -}}

{{/* The on-disk cache: a Deployment's containers restart in their pod. */}}
{{- define "cip.cache" -}}
{{- if and (eq .Values.mode "deployment") .Values.registry.cache.enabled -}}true{{- end -}}
{{- end -}}
