{{/*
Names and labels.
*/}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name; the release name alone when it already contains the chart name. */}}
{{- define "sluice.fullname" -}}
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

{{/* The admin Service's name; "-admin" is kept even for a 63-character full name. */}}
{{- define "sluice.adminName" -}}
{{- printf "%s-admin" (include "sluice.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sluice.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/*
The sluice configuration file: .Values.config as YAML, with template
expressions in its strings expanded. The ConfigMap and the checksum/config
annotation both use this, so any change to the file rolls the pods.
*/}}
{{- define "sluice.configFile" -}}
{{- $server := required "config.server is required (at least listen and admin_listen)" .Values.config.server -}}
{{- range $key := list "listen" "admin_listen" -}}
{{- $addr := required (printf "config.server.%s is required: the chart derives the container ports from it" $key) (get $server $key) | toString -}}
{{- if regexMatch `^(127\.|\[::1\]:|localhost:)` $addr -}}
{{- fail (printf "config.server.%s is %s, a loopback address: the Service and the kubelet probes cannot reach it; use 0.0.0.0:PORT" $key $addr) -}}
{{- end -}}
{{- end -}}
{{- $storeRedis := list -}}
{{- range $name, $limit := (default dict .Values.config.limits) -}}
{{- if and (kindIs "map" $limit) (eq (toString (default "local" $limit.store)) "redis") -}}
{{- $storeRedis = append $storeRedis $name -}}
{{- end -}}
{{- end -}}
{{- if and $storeRedis (not (hasKey .Values.config "redis")) -}}
{{- fail (printf "limits %s use store: redis but config.redis is not set: add config.redis.address (a managed Redis or one in the cluster)" (join ", " $storeRedis)) -}}
{{- end -}}
{{- $used := dict -}}
{{- range $route := (default list .Values.config.routes) -}}
{{- if kindIs "map" $route -}}
{{- $_ := set $used (toString $route.upstream) true -}}
{{- end -}}
{{- end -}}
{{- range $name, $_ := (default dict .Values.config.upstreams) -}}
{{- if not (hasKey $used $name) -}}
{{- fail (printf "config.upstreams.%s is not used by any route. sluice resolves every upstream at start-up, so an unused one (typically the chart's default, kept because values maps merge) can stop it: remove it with `%s: null` under config.upstreams, or route to it" $name $name) -}}
{{- end -}}
{{- end -}}
{{- $config := .Values.config -}}
{{- if and .Values.tls.enabled (hasKey $server "tls_listen") -}}
{{- fail "config.server.tls_listen is set by the chart when tls.enabled: use tls.port instead (or tls.enabled: false and your own certificate files)" -}}
{{- end -}}
{{- if and .Values.tls.enabled (hasKey $config "tls") -}}
{{- fail "config.tls is set by the chart when tls.enabled: use tls.secretName, tls.minVersion and tls.clientCaSecretName instead (or tls.enabled: false and your own certificate files)" -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $config = deepCopy .Values.config -}}
{{- $_ := set $config.server "tls_listen" (include "sluice.tlsListen" .) -}}
{{- $_ := set $config "tls" (include "sluice.tlsConfig" . | fromYaml) -}}
{{- end -}}
{{- tpl (toYaml $config) . -}}
{{- end -}}

{{/*
Where the chart mounts the TLS Secrets (no subPath: the kubelet updates these
files when a Secret changes; sluice re-reads them on SIGHUP).
*/}}
{{- define "sluice.tlsDir" -}}/etc/sluice/tls{{- end -}}
{{- define "sluice.clientCaDir" -}}/etc/sluice/client-ca{{- end -}}

{{/* The `tls` section of sluice.yaml (SPEC §9) when tls.enabled. */}}
{{- define "sluice.tlsConfig" -}}
{{- $tls := .Values.tls -}}
{{- $secret := required "tls.enabled is true but tls.secretName is not set: name a kubernetes.io/tls Secret (keys tls.crt and tls.key) in the release namespace, e.g. one cert-manager issues" $tls.secretName -}}
certificates:
  - cert: {{ include "sluice.tlsDir" . }}/tls.crt
    key: {{ include "sluice.tlsDir" . }}/tls.key
{{- if $tls.minVersion }}
{{- $v := toString $tls.minVersion }}
{{- if not (has $v (list "1.2" "1.3")) }}
{{- fail (printf "tls.minVersion is %q: use \"1.2\" or \"1.3\" (quoted)" $v) }}
{{- end }}
min_version: {{ $v | quote }}
{{- end }}
{{- if $tls.clientCaSecretName }}
client_ca: {{ include "sluice.clientCaDir" . }}/ca.crt
{{- end }}
{{- end -}}

{{/*
server.tls_listen: the host of config.server.listen (0.0.0.0 by default,
[::] for dual stack) with tls.port.
*/}}
{{- define "sluice.tlsListen" -}}
{{- $listen := toString .Values.config.server.listen -}}
{{- printf "%s:%s" (trimSuffix (printf ":%s" (include "sluice.port" $listen)) $listen) (include "sluice.tlsPort" .) -}}
{{- end -}}

{{/* The TLS container port (tls.port), distinct from the other two. */}}
{{- define "sluice.tlsPort" -}}
{{- $port := int .Values.tls.port -}}
{{- if or (lt $port 1) (gt $port 65535) -}}
{{- fail (printf "tls.port is %v: a port number from 1 to 65535" .Values.tls.port) -}}
{{- end -}}
{{- range $key := list "listen" "admin_listen" -}}
{{- if eq (toString $port) (include "sluice.port" (get $.Values.config.server $key)) -}}
{{- fail (printf "tls.port %d is also the port of config.server.%s: pick another" $port $key) -}}
{{- end -}}
{{- end -}}
{{- $port -}}
{{- end -}}

{{/* The port number of a HOST:PORT address ("[::]:8080" included). */}}
{{- define "sluice.port" -}}
{{- $port := splitList ":" (toString .) | last -}}
{{- if not (regexMatch `^[0-9]+$` $port) -}}
{{- fail (printf "cannot read a port from %q (expected HOST:PORT)" (toString .)) -}}
{{- end -}}
{{- $port -}}
{{- end -}}

{{- define "sluice.proxyPort" -}}
{{- include "sluice.port" .Values.config.server.listen -}}
{{- end -}}

{{- define "sluice.adminPort" -}}
{{- include "sluice.port" .Values.config.server.admin_listen -}}
{{- end -}}

{{/* Whole seconds, rounded up, of a sluice duration such as 500ms, 20s, 1.5m. */}}
{{- define "sluice.durationSeconds" -}}
{{- $s := toString . -}}
{{- $num := regexFind `^[0-9]+(\.[0-9]+)?` $s -}}
{{- $unit := trimPrefix $num $s -}}
{{- $factors := dict "us" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- if or (eq $num "") (not (hasKey $factors $unit)) -}}
{{- fail (printf "cannot read %q as a duration (a number and us, ms, s, m or h, e.g. 20s)" $s) -}}
{{- end -}}
{{- mulf (float64 $num) (get $factors $unit) | ceil | int -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: the preStop sleep, then shutdown_grace for
draining, then 5 s for the process to exit. An explicit value must cover it.
*/}}
{{- define "sluice.terminationGracePeriodSeconds" -}}
{{- $grace := include "sluice.durationSeconds" (default "20s" .Values.config.server.shutdown_grace) | int -}}
{{- $needed := add (int .Values.preStopSleepSeconds) $grace 5 -}}
{{- $set := .Values.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $set -}}
{{- $needed -}}
{{- else if lt (int $set) (int $needed) -}}
{{- fail (printf "terminationGracePeriodSeconds is %d but preStopSleepSeconds (%d) + config.server.shutdown_grace (%ds) + 5 needs %d; raise it or leave it empty to compute it" (int $set) (int .Values.preStopSleepSeconds) $grace $needed) -}}
{{- else -}}
{{- int $set -}}
{{- end -}}
{{- end -}}

{{/* Names of limits kept per replica (every limit without store: redis). */}}
{{- define "sluice.localLimits" -}}
{{- $names := list -}}
{{- range $name, $limit := (default dict .Values.config.limits) -}}
{{- if ne (toString (default "local" (and (kindIs "map" $limit) $limit.store))) "redis" -}}
{{- $names = append $names $name -}}
{{- end -}}
{{- end -}}
{{- join ", " $names -}}
{{- end -}}
