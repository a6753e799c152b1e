{{/* Labels shared by every object; selector labels must stay stable. */}}
{{- define "vipspeaker.selectorLabels" -}}
app.kubernetes.io/name: vipspeaker
{{- end }}

{{- define "vipspeaker.labels" -}}
{{ include "vipspeaker.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The allocator's objects: their own name, part of vipspeaker. */}}
{{- define "vipspeaker.allocatorSelectorLabels" -}}
app.kubernetes.io/name: vipspeaker-allocator
{{- end }}

{{- define "vipspeaker.allocatorLabels" -}}
{{ include "vipspeaker.allocatorSelectorLabels" . }}
app.kubernetes.io/part-of: vipspeaker
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The ServiceAccount the allocator's roles are bound to: its own, or the
speakers' when they allocate themselves (allocator.enabled false). */}}
{{- define "vipspeaker.allocatorServiceAccount" -}}
{{- if .Values.allocator.enabled -}}
vipspeaker-allocator
{{- else -}}
vipspeaker
{{- end }}
{{- end }}

{{- define "vipspeaker.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* vipspeaker.toml from the values; JSON arrays of strings are TOML arrays. */}}
{{- define "vipspeaker.toml" -}}
{{- if .Values.vipspeakerToml -}}
{{ .Values.vipspeakerToml }}
{{- else -}}
default-class = {{ .Values.defaultClass }}

[interface]
name = {{ .Values.interface.name | quote }}
kind = {{ .Values.interface.kind | quote }}
{{- range .Values.pools }}

[[pools]]
name = {{ required "every pool needs a name" .name | quote }}
addresses = {{ required "every pool needs addresses" .addresses | toJson }}
{{- with .mode }}
mode = {{ . | quote }}
{{- end }}
{{- if hasKey . "autoAssign" }}
auto-assign = {{ .autoAssign }}
{{- end }}
{{- if hasKey . "avoidBuggyIPs" }}
avoid-buggy-ips = {{ .avoidBuggyIPs }}
{{- end }}
{{- with .namespaces }}
namespaces = {{ . | toJson }}
{{- end }}
{{- with .serviceSelector }}
service-selector = {{ . | quote }}
{{- end }}
{{- with .priority }}
priority = {{ . }}
{{- end }}
{{- with .layer2 }}
  [pools.layer2]
  interfaces = {{ .interfaces | default list | toJson }}
{{- end }}
{{- with .advertise }}
  [pools.advertise]
{{- with .nodeSelector }}
  node-selector = {{ . | quote }}
{{- end }}
{{- with .communities }}
  communities = {{ . | toJson }}
{{- end }}
{{- with .localPref }}
  local-pref = {{ . }}
{{- end }}
{{- with .aggregationLength }}
  aggregation-length = {{ . }}
{{- end }}
{{- with .aggregationLengthV6 }}
  aggregation-length-v6 = {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{- with .Values.layer2 }}

[layer2]
{{- if hasKey . "gratuitousCount" }}
gratuitous-count = {{ .gratuitousCount }}
{{- end }}
{{- with .gratuitousInterval }}
gratuitous-interval = {{ . | quote }}
{{- end }}
{{- with .fastPath }}
fast-path = {{ . | quote }}
{{- end }}
{{- end }}
{{- with .Values.membership }}

[membership]
{{- with .join }}
join = {{ . | toJson }}
{{- end }}
{{- if .secretName }}
secret-file = "/etc/vipspeaker-secret/secret"
{{- end }}
{{- end }}
{{- range .Values.peerNodes }}

[[peer-nodes]]
neighbors = {{ .neighbors | toJson }}
node-selector = {{ .nodeSelector | quote }}
{{- end }}
{{- end }}
{{- end }}
