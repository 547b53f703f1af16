// Package kuberuntime runs PostgresInstances as pods: for each instance it
// keeps its Secrets (secrets.go: the application's, the superuser's, the
// backup token's, and a server certificate from the site CA, tls.go), a
// ConfigMap with the
// configuration, a Service for the primary endpoint and a StatefulSet of one
// replica with a PVC from spec.storage, all owned by the instance. The pod
// runs `outpost instance run` (package instancemanager), which does the work
// inside the container.
//
// It implements controller.Runtime. It creates and updates objects
// and reads StatefulSet status. It talks to a Ready pod for DatabaseURL,
// over TLS with the controller's client certificate, asks its instance
// manager's GET /archiver for the WALArchiving condition (archiving.go),
// and its POST /backup for backups (backup_runner.go); retention runs in
// the controller, on the ObjectStore resolved from its Secrets
// (objectstore.go).
// Where no kubelet runs them (envtest) instances stay not Ready, and say so.
package kuberuntime
