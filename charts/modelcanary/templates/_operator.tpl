{{/* Helpers of the operator's own objects (Deployment, peering, metrics). */}}

{{/* The (Cluster)KopfPeering name the replicas elect their leader through. */}}
{{- define "modelcanary.peeringName" -}}
{{- default (include "modelcanary.fullname" .) .Values.ha.peeringName -}}
{{- end -}}

{{/* Fail early with a message naming the value: the schema says the same,
     but `helm template --skip-schema-validation` users still get a clear error. */}}
{{- define "modelcanary.validate" -}}
{{- if and (eq .Values.mode "namespaced") (empty .Values.watchNamespaces) -}}
{{- fail "watchNamespaces: namespaced mode needs at least one namespace to watch" -}}
{{- end -}}
{{- if and .Values.ha.enabled (.Values.sharding | default dict).enabled -}}
{{- fail "sharding.enabled and ha.enabled: choose one; sharded replicas all act, each on its own share, and peering would pause all but one" -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.ha.enabled) -}}
{{- fail "replicaCount: more than one replica needs ha.enabled (kopf peering), or the replicas would all act on the same objects; set ha.enabled and ha.replicas instead" -}}
{{- end -}}
{{- end -}}
