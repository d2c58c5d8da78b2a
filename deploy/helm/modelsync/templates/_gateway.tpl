{{/* The gateway's Pods are not the modelsync Pods: another name, so the webhook's and
OVMS's Services (which select name + instance) never route to them. */}}
{{- define "modelsync.gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelsync.gateway.labels" -}}
{{ include "modelsync.gateway.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "modelsync.gateway.spillDir" -}}/var/lib/modelsync-gateway/spill{{- end -}}

{{/* The gateway's sync-config.yaml: config.minio, the log settings, and gateway.config with
the model service defaulting to this release's OVMS and the spill on the volume. */}}
{{- define "modelsync.gateway.config" -}}
{{- $gw := deepCopy (default dict .Values.gateway.config) -}}
{{- $ovms := printf "http://%s-ovms:%v" (include "modelsync.fullname" .) .Values.ovms.restPort -}}
{{- $service := deepCopy (default dict $gw.model_service) -}}
{{- $_ := set $service "url" ($service.url | default $ovms) -}}
{{- $_ := set $gw "model_service" $service -}}
{{- $reporting := deepCopy (default dict $gw.reporting) -}}
{{- $_ := set $reporting "spill_dir" (include "modelsync.gateway.spillDir" .) -}}
{{- $_ := set $gw "reporting" $reporting -}}
{{- if .Values.gateway.kafkaWorker.enabled -}}
{{- $kafka := deepCopy (default dict $gw.kafka) -}}
{{- $_ := set $kafka "metrics_port" .Values.gateway.kafkaWorker.metricsPort -}}
{{- $_ := set $gw "kafka" $kafka -}}
{{- end -}}
{{- if .Values.gateway.grpc.enabled -}}
{{- $grpc := deepCopy (default dict $gw.grpc) -}}
{{- $_ := set $grpc "enabled" true -}}
{{- $_ := set $grpc "bind" (printf "0.0.0.0:%v" .Values.gateway.grpc.port) -}}
{{- $_ := set $gw "grpc" $grpc -}}
{{- end -}}
{{- $sync := pick .Values.config.sync "log_level" "log_format" -}}
{{- toYaml (dict "minio" .Values.config.minio "sync" $sync "gateway" $gw) -}}
{{- end -}}

{{/* What every gateway StatefulSet's Pods share: security, volumes, the spill claim. */}}
{{- define "modelsync.gateway.podSpec" -}}
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "modelsync.fullname" . }}-gateway-config
  {{- if .Values.gateway.kafkaSecret }}
  - name: kafka
    secret:
      secretName: {{ .Values.gateway.kafkaSecret }}
  {{- end }}
  - name: tmp
    emptyDir:
      medium: Memory
      sizeLimit: 64Mi
{{- end -}}

{{- define "modelsync.gateway.mounts" -}}
- name: spill
  mountPath: {{ include "modelsync.gateway.spillDir" . }}
- name: config
  mountPath: /config
  readOnly: true
{{- if .Values.gateway.kafkaSecret }}
- name: kafka
  mountPath: /run/secrets/kafka
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "modelsync.gateway.env" -}}
- name: CONFIG_PATH
  value: /config/sync-config.yaml
{{- if .Values.gateway.kafkaSecret }}
- name: MODELSYNC_GATEWAY_KAFKA_PASSWORD_FILE
  value: /run/secrets/kafka/password
{{- end }}
{{- end -}}

{{- define "modelsync.gateway.claims" -}}
persistentVolumeClaimRetentionPolicy:
  whenDeleted: Retain
  whenScaled: Retain
volumeClaimTemplates:
  - metadata:
      name: spill
      labels:
        {{- include "modelsync.gateway.selectorLabels" . | nindent 8 }}
    spec:
      accessModes: ["ReadWriteOnce"]
      {{- with .Values.gateway.spill.storageClassName }}
      storageClassName: {{ . }}
      {{- end }}
      resources:
        requests:
          storage: {{ .Values.gateway.spill.size }}
{{- end -}}
