{{/* The pusher's pod template, shared by the Deployment and the CronJob. */}}
{{- define "cip.podTemplate" -}}
{{- $v := .Values -}}
metadata:
  labels:
    {{- include "cip.selectorLabels" . | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # Rolls the pods when the configuration changes.
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- if eq $v.mode "cronjob" }}
  # Failed pods stay for `kubectl logs`; the Job makes new ones.
  restartPolicy: Never
  {{- end }}
  serviceAccountName: {{ include "cip.serviceAccountName" . }}
  # The service account turns token mounting off; the pusher needs it to
  # list workloads through the API server.
  automountServiceAccountToken: true
  enableServiceLinks: false
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if include "cip.ha" . }}
  # Prefer the replicas on different nodes, but still schedule them all on
  # a single-node cluster.
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "cip.selectorLabels" . | nindent 10 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  containers:
    - name: container-image-pusher
      image: {{ include "cip.image" . | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args:
        {{- include "cip.args" . | nindent 8 }}
      envFrom:
        - configMapRef:
            name: {{ include "cip.fullname" . }}
      {{- $env := list }}
      {{- if include "cip.ha" . }}
      {{- $env = append $env (dict "name" "POD_NAMESPACE" "valueFrom" (dict "fieldRef" (dict "fieldPath" "metadata.namespace"))) }}
      {{- $env = append $env (dict "name" "POD_NAME" "valueFrom" (dict "fieldRef" (dict "fieldPath" "metadata.name"))) }}
      {{- end }}
      {{- if eq $v.remoteWrite.auth.type "basic" }}
      {{- $env = append $env (dict "name" "REMOTE_WRITE_USERNAME" "valueFrom" (dict "secretKeyRef" (dict "name" (include "cip.authSecret" .) "key" $v.remoteWrite.auth.usernameKey))) }}
      {{- end }}
      {{- with $v.proxy }}
      {{- if .httpsProxy }}{{ $env = append $env (dict "name" "HTTPS_PROXY" "value" .httpsProxy) }}{{ end }}
      {{- if .httpProxy }}{{ $env = append $env (dict "name" "HTTP_PROXY" "value" .httpProxy) }}{{ end }}
      {{- if .noProxy }}{{ $env = append $env (dict "name" "NO_PROXY" "value" .noProxy) }}{{ end }}
      {{- end }}
      {{- $env = concat $env $v.extraEnv }}
      {{- with $env }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: metrics
          containerPort: {{ $v.service.metricsPort }}
          protocol: TCP
        {{- if eq $v.mode "deployment" }}
        - name: telemetry
          containerPort: {{ $v.service.telemetryPort }}
          protocol: TCP
        {{- end }}
      {{- if eq $v.mode "deployment" }}
      # On the health listener, which inventory readers cannot crowd out.
      livenessProbe:
        httpGet:
          path: /healthz
          port: telemetry
        initialDelaySeconds: 5
        periodSeconds: 20
        timeoutSeconds: 5
        failureThreshold: 3
      # Ready after the first snapshot, which on a large cluster with cold
      # caches can take minutes: no deadline here.
      readinessProbe:
        httpGet:
          path: /readyz
          port: telemetry
        periodSeconds: 10
        timeoutSeconds: 5
      {{- end }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      {{- include "cip.volumeMounts" . | nindent 6 }}
  {{- include "cip.volumes" . | nindent 2 }}
{{- end -}}

{{- define "cip.volumeMounts" -}}
{{- $v := .Values -}}
{{- $mounts := list -}}
{{- if $v.registry.dockerConfig.enabled -}}
{{- $mounts = append $mounts (dict "name" "docker-config" "mountPath" "/etc/container-image-pusher/docker" "readOnly" true) -}}
{{- end -}}
{{- if ne $v.remoteWrite.auth.type "none" -}}
{{- $mounts = append $mounts (dict "name" "remote-write" "mountPath" "/etc/container-image-pusher/remote-write" "readOnly" true) -}}
{{- end -}}
{{- if $v.remoteWrite.tls.existingSecret -}}
{{- $mounts = append $mounts (dict "name" "tls" "mountPath" "/etc/container-image-pusher/tls" "readOnly" true) -}}
{{- end -}}
{{- if or $v.remoteWrite.config.inline $v.remoteWrite.config.existingSecret -}}
{{- $mounts = append $mounts (dict "name" "remote-write-config" "mountPath" "/etc/container-image-pusher/config" "readOnly" true) -}}
{{- end -}}
{{- if include "cip.verification" . -}}
{{- $mounts = append $mounts (dict "name" "verification" "mountPath" "/etc/container-image-pusher/verify" "readOnly" true) -}}
{{- end -}}
{{- if include "cip.cache" . -}}
{{- $mounts = append $mounts (dict "name" "cache" "mountPath" "/var/cache/container-image-pusher") -}}
{{- end -}}
{{- with $mounts -}}
volumeMounts:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{- define "cip.volumes" -}}
{{- $v := .Values -}}
{{- $volumes := list -}}
{{- if $v.registry.dockerConfig.enabled -}}
{{- $volumes = append $volumes (dict "name" "docker-config" "secret" (dict "secretName" (include "cip.dockerConfigSecret" .) "defaultMode" 288)) -}}
{{- end -}}
{{- with $v.remoteWrite.auth -}}
{{- if eq .type "basic" -}}
{{- $volumes = append $volumes (dict "name" "remote-write" "secret" (dict "secretName" (include "cip.authSecret" $) "items" (list (dict "key" .passwordKey "path" "password")) "defaultMode" 288)) -}}
{{- else if eq .type "bearer" -}}
{{- $volumes = append $volumes (dict "name" "remote-write" "secret" (dict "secretName" (include "cip.authSecret" $) "items" (list (dict "key" .bearerTokenKey "path" "bearer-token")) "defaultMode" 288)) -}}
{{- end -}}
{{- end -}}
{{- with $v.remoteWrite.tls -}}
{{- if .existingSecret -}}
{{- $items := list -}}
{{- if .caKey }}{{ $items = append $items (dict "key" .caKey "path" "ca.crt") }}{{ end -}}
{{- if .certKey }}{{ $items = append $items (dict "key" .certKey "path" "tls.crt") }}{{ end -}}
{{- if .keyKey }}{{ $items = append $items (dict "key" .keyKey "path" "tls.key") }}{{ end -}}
{{- $volumes = append $volumes (dict "name" "tls" "secret" (dict "secretName" .existingSecret "items" $items "defaultMode" 288)) -}}
{{- end -}}
{{- end -}}
{{- if or $v.remoteWrite.config.inline $v.remoteWrite.config.existingSecret -}}
{{- $volumes = append $volumes (dict "name" "remote-write-config" "secret" (dict "secretName" (include "cip.remoteWriteConfigSecret" .) "items" (list (dict "key" $v.remoteWrite.config.key "path" "remote-write.yaml")) "defaultMode" 288)) -}}
{{- end -}}
{{- if include "cip.verification" . -}}
{{- $volumes = append $volumes (dict "name" "verification" "configMap" (dict "name" (include "cip.verificationConfigMap" .))) -}}
{{- end -}}
{{- if include "cip.cache" . -}}
{{- $size := mul 3 (int64 $v.registry.cache.maxBytes) -}}
{{- $volumes = append $volumes (dict "name" "cache" "emptyDir" (dict "sizeLimit" (printf "%d" $size))) -}}
{{- end -}}
{{- with $volumes -}}
volumes:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}
