package controller

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// Condition reasons of a PostgresInstance.
const (
	ReasonRunning      = "Running"
	ReasonInvalidSpec  = "InvalidSpec"
	ReasonRuntimeError = "RuntimeError"
)

// How soon an instance is looked at again: quickly while it comes up, slowly
// once it runs, and in between after an error.
const (
	requeueProgressing = time.Second
	requeueRunning     = 30 * time.Second
	requeueError       = 5 * time.Second
)

// InstanceReconciler turns a PostgresInstance spec into a running server
// through a runtime, and writes what it sees into the status.
type InstanceReconciler struct {
	Runtime InstanceRuntime
	Events  EventRecorder
	// Usage, when set, meters instances: it is told about every instance
	// with a valid spec on each pass, and about every deletion.
	Usage UsageRecorder
	// Metrics, when set, receives what the runtime saw of WAL archiving.
	Metrics *BackupMetrics
}

// Reconcile brings one instance towards its spec, updates inst.Status in
// place, and says when to look again. It never returns an error: failures
// are conditions a user can read.
func (r *InstanceReconciler) Reconcile(ctx context.Context, inst *outpostv1.PostgresInstance) (requeueAfter time.Duration) {
	before := inst.Status.DeepCopy()
	defer func() { r.recordTransitions(inst, before) }()
	inst.Status.ObservedGeneration = inst.Generation

	if err := checkInstanceSpec(&inst.Spec); err != nil {
		r.setReady(inst, metav1.ConditionFalse, ReasonInvalidSpec, err.Error())
		inst.Status.Phase = outpostv1.InstanceFailed
		// Nothing will change until the spec does.
		return 0
	}
	r.recordUsage(ctx, inst, false)

	obs, err := r.Runtime.EnsureInstance(ctx, inst)
	if err != nil {
		r.setReady(inst, metav1.ConditionFalse, ReasonRuntimeError, err.Error())
		inst.Status.Phase = outpostv1.InstanceFailed
		return requeueError
	}
	inst.Status.Endpoint = obs.Endpoint
	inst.Status.Restarts = obs.Restarts
	if obs.PgvectorVersion != "" {
		inst.Status.PgvectorVersion = obs.PgvectorVersion
	}
	r.setParallelIndexBuilds(inst, inst.Status.PgvectorVersion)
	if obs.CredentialsSecret != "" {
		inst.Status.CredentialsSecret = &outpostv1.LocalObjectReference{Name: obs.CredentialsSecret}
	}
	r.observeArchiving(inst, obs.Archiving)
	if obs.Ready {
		r.setReady(inst, metav1.ConditionTrue, ReasonRunning, "PostgreSQL accepts connections at "+obs.Endpoint)
		inst.Status.Phase = outpostv1.InstanceRunning
		inst.Status.Bootstrapped = true
		return requeueRunning
	}
	reason := obs.Reason
	if reason == "" {
		reason = string(outpostv1.InstanceProvisioning)
	}
	r.setReady(inst, metav1.ConditionFalse, reason, obs.Message)
	inst.Status.Phase = outpostv1.InstanceProvisioning
	return requeueProgressing
}

// Delete stops the instance and handles its data by deletionPolicy.
func (r *InstanceReconciler) Delete(ctx context.Context, inst *outpostv1.PostgresInstance) error {
	if err := r.Runtime.DeleteInstance(ctx, inst); err != nil {
		r.Events.Event(inst, "Warning", "DeleteFailed", err.Error())
		return err
	}
	if err := r.recordUsage(ctx, inst, true); err != nil {
		// Returning the error keeps the object, so the deletion (which is
		// idempotent) and its usage record are retried; otherwise the
		// instance would stay billed.
		return err
	}
	r.Metrics.Forget(inst.Namespace, inst.Name)
	r.Events.Event(inst, "Normal", "Deleted", "instance stopped; data "+deletionOutcome(inst.Spec.DeletionPolicy))
	return nil
}

func deletionOutcome(p outpostv1.DeletionPolicy) string {
	if p == outpostv1.DeletionDelete {
		return "removed (deletionPolicy Delete)"
	}
	return "kept (deletionPolicy Retain)"
}

func (r *InstanceReconciler) setReady(inst *outpostv1.PostgresInstance, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&inst.Status.Conditions, metav1.Condition{
		Type:               outpostv1.ConditionReady,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: inst.Generation,
	})
}

// recordTransitions emits an event whenever the phase or the Ready reason
// changes, and when the server was restarted after dying.
func (r *InstanceReconciler) recordTransitions(inst *outpostv1.PostgresInstance, before *outpostv1.PostgresInstanceStatus) {
	if inst.Status.Restarts > before.Restarts {
		r.Events.Event(inst, "Warning", "Restarted", "PostgreSQL died and was restarted by the supervisor")
	}
	RecordReadyTransition(r.Events, inst, before.Conditions, inst.Status.Conditions,
		before.Phase != inst.Status.Phase, inst.Status.Phase == outpostv1.InstanceFailed)
}
