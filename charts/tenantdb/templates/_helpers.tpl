{{/* Names, labels, and the rules every RBAC object of the chart is made of. */}}

{{- define "tenantdb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tenantdb.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "tenantdb.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "tenantdb.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "tenantdb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tenantdb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tenantdb.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tenantdb.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: tenantdb
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tenantdb.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tenantdb.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tenantdb.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "tenantdb.backupClaim" -}}
{{- default (printf "%s-backups" (include "tenantdb.fullname" .)) .Values.backup.storage.volume.existingClaim }}
{{- end }}

{{/*
What the operator does in the namespaces it serves, and nothing more:
- tenants, migrations: kopf lists and watches them, patches its finalizer and
  annotations onto them, and writes their status subresource (kopf for
  Tenants, controllers/kube.py for Migrations, which it also lists itself);
- tenants/finalizers: update, so a credentials Secret may name its Tenant as
  an owner that blocks deletion (OwnerReferencesPermissionEnforcement);
- secrets: a tenant's credentials Secret is read, created, then patched;
- events: kopf and the statement watchdog post core/v1 Events.
*/}}
{{- define "tenantdb.namespacedRules" -}}
- apiGroups: ["tenantdb.io"]
  resources: ["tenants", "migrations", "backups", "backupschedules"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["tenantdb.io"]
  resources: ["tenants/status", "migrations/status", "backups/status", "backupschedules/status"]
  verbs: ["patch"]
- apiGroups: ["tenantdb.io"]
  resources: ["tenants", "backups"]
  verbs: ["get"]
- apiGroups: ["tenantdb.io"]
  resources: ["backups"]
  verbs: ["create", "delete"]
- apiGroups: ["tenantdb.io"]
  resources: ["tenants/finalizers", "backupschedules/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.peering.enabled }}
{{- /* kopf watches its peering objects and patches its own record into them. */}}
- apiGroups: ["kopf.dev"]
  resources: [{{ ternary "kopfpeerings" "clusterkopfpeerings" (not (empty .Values.watchNamespaces)) | quote }}]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- end }}

{{/* The peering object's name. */}}
{{- define "tenantdb.peeringName" -}}
{{- default (include "tenantdb.fullname" .) .Values.peering.name }}
{{- end }}

{{/*
What kopf itself reads cluster-wide: CRDs, to notice its resources appear,
change or go; DatabaseServers (cluster-scoped); and, when it serves a list
of namespaces, the namespaces, to start and stop watching them as they come
and go. Peering objects are
granted with the namespaced rules (a ClusterKopfPeering when cluster-wide).
*/}}
{{- define "tenantdb.discoveryRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- /* DatabaseServers are cluster-scoped: served cluster-wide in either mode. */}}
- apiGroups: ["tenantdb.io"]
  resources: ["databaseservers"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["tenantdb.io"]
  resources: ["databaseservers/status"]
  verbs: ["patch"]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}

{{/* Rules across values, which values.schema.json cannot say. */}}
{{- define "tenantdb.validate" -}}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.health.port)) }}
{{- fail (printf "metrics.port and health.port must differ (both are %v)" .Values.health.port) }}
{{- end }}
{{- if eq (int .Values.health.readinessPort) (int .Values.health.port) }}
{{- fail (printf "health.readinessPort and health.port must differ (both are %v)" .Values.health.port) }}
{{- end }}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.health.readinessPort)) }}
{{- fail (printf "metrics.port and health.readinessPort must differ (both are %v)" .Values.metrics.port) }}
{{- end }}
{{- if gt (int .Values.concurrency.poolMinSize) (int .Values.concurrency.poolMaxSize) }}
{{- fail (printf "concurrency.poolMinSize (%v) must not exceed concurrency.poolMaxSize (%v)" .Values.concurrency.poolMinSize .Values.concurrency.poolMaxSize) }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled: there is no endpoint to scrape" }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) .Values.rbac.create }}
{{- fail "serviceAccount.create is false: name the existing account in serviceAccount.name (RBAC would bind the namespace's default account)" }}
{{- end }}
{{- end }}
