// Package controller is the reconcile core of Outpost: it turns the desired
// state of Outpost resources into running PostgreSQL instances, feature
// stores, backups and usage records, whatever the source of that state and
// wherever the instances run. The map below says where everything else is.
//
// # The core: this package
//
// One reconciler per kind, each given an object and writing its status,
// knowing neither the Kubernetes API nor the manifests directory:
// InstanceReconciler (instance.go; guard.go re-checks specs, pgvector.go
// the parallel index builds), FeatureStoreReconciler (featurestore.go),
// BackupReconciler (backup.go, with the level-based schedules: a scheduled
// Backup is named after its cron slot and the slot taken is kept in the
// instance's status; walarchiving.go and verification.go for the
// WALArchiving and BackupVerified conditions) and DataControllerReconciler
// (datacontroller.go). Instances are reached only through Runtime
// (runtime.go), which both runtimes implement; usage is recorded through
// UsageRecorder (usage.go). What both runtimes and both sources must agree
// on is written once here: a PostgresInstance's server settings
// (serversettings.go), an ObjectStore's store config (objectstoreconfig.go),
// spec durations such as 7d (duration.go), and a condition with the event
// that announces it (conditionevents.go). metrics.go serves what the
// reconcilers saw of WAL archiving and verification to Prometheus.
//
// # Sources: where desired state comes from
//
//   - controller/kubesource: the Kubernetes API, through controller-runtime:
//     finalizers, status subresources, events and leader election; the
//     adapters load an object, call the core and write its status
//     (NewManager assembles them with a Runtime); and the ObjectStore
//     reconciler, which only Kubernetes has.
//   - controller/dirsource: a directory of manifests, validated by
//     controller/manifest, with identity, status and events kept in
//     controldb (Assemble wires it to a Runtime). It keeps the last
//     accepted object of a broken file in force, and lookups answer from
//     that accepted state (accepted.go), never by reading the directory
//     again.
//
// # Runtimes: where instances run
//
//   - controller/kuberuntime: a StatefulSet, Service, Secrets and ConfigMap
//     per instance. Its pod half, controller/instancemanager, is `outpost
//     instance run` inside the pod.
//   - controller/localruntime: supervised postgres processes under a state
//     directory, with backups, restores and verification restores on this
//     host.
//
// # The rest
//
//   - controller/singlehost: the single-host app. `outpost up` wires
//     controldb, dirsource and localruntime together; it also holds the
//     state directory's layout and the work of the single-host commands
//     (apply, get, describe, delete, psql, featurestore, backup, usage).
//   - controller/controldb: the controller's own state in PostgreSQL:
//     accepted objects with their status, manifest errors, events, local
//     ports (and usageexport's ledger, in tables of its own).
//   - Helpers: controller/manifest (manifests validated as the apiserver
//     would), controller/archiving (reading WAL archiving, putting drifted
//     settings back), controller/safepath (file paths from manifest names),
//     controller/api/v1alpha1 (the resource types and their CRD markers).
//
// The domain work is done by the postgres, vectorstore, backup and
// usageexport packages, which the packages above call and which import none
// of them, nor the API types: they take plain inputs and return plain
// results, and the core turns those into status (domain.go states the rule
// and how the vocabularies are kept one).
//
// # Adding a kind
//
// A new kind touches:
//
//  1. its type, controller/api/v1alpha1/<kind>_types.go, then `make
//     generate` for deepcopy and charts/outpost/crds/outpost.dev_<kinds>.yaml;
//  2. its reconciler here, controller/<kind>.go;
//  3. each source's adapter: controller/kubesource/<kind>_controller.go, and
//     controller/dirsource/<kind>.go with the kind's case in controller.go,
//     each wired in where its controller is assembled;
//  4. the runtime interface and both runtimes, if it needs more of the
//     instance than they offer;
//  5. the chart's RBAC in charts/outpost/templates/rbac.yaml (the resource,
//     its status and finalizers);
//  6. docs: its names for `outpost get` (controller/singlehost/view.go),
//     README.md and this map;
//  7. tests: the reconciler's here, admission in controller/api/v1alpha1,
//     end to end in test/e2e.
package controller
