// Package kubesource is the Kubernetes source of desired state: a controller-runtime
// manager whose PostgresInstance reconciler reads specs from the Kubernetes
// API and hands them to the same reconcile core (controller.InstanceReconciler)
// that the single-host directory source uses, with whatever
// controller.Runtime the caller chose (kuberuntime for pods, localruntime
// for local processes). NewManager is where the two meet the core.
//
// It owns what is Kubernetes-specific about reconciling: the finalizer that
// lets deletion honour deletionPolicy, status subresource updates, events
// through the Kubernetes event API, and leader election so that two replicas
// never both act. It does not create workload objects or run backups
// itself; that is the runtime's job.
package kubesource
