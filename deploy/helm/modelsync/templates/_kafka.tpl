{{/* Fleet mode on a secured Kafka: events.kafka.security's password and CA for the agent
(the event reader) and the webhook (it publishes resync commands), from eventsKafkaSecret. */}}
{{- define "modelsync.eventsKafka.env" -}}
{{- if .Values.eventsKafkaSecret }}
- name: MODELSYNC_EVENTS_KAFKA_PASSWORD_FILE
  value: /run/secrets/kafka/password
{{- end }}
{{- end -}}

{{- define "modelsync.eventsKafka.mount" -}}
{{- if .Values.eventsKafkaSecret }}
- name: events-kafka
  mountPath: /run/secrets/kafka
  readOnly: true
{{- end }}
{{- end -}}

{{- define "modelsync.eventsKafka.volume" -}}
{{- if .Values.eventsKafkaSecret }}
- name: events-kafka
  secret:
    secretName: {{ .Values.eventsKafkaSecret }}
{{- end }}
{{- end -}}
