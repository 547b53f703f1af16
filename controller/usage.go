package controller

import (
	"context"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/usageexport"
)

// UsageRecorder meters instances. UsageLedger implements it; both calls
// are idempotent, so calling them on every pass is cheap and a missed call
// is made good by the next one.
type UsageRecorder interface {
	// InstanceObserved says the instance exists with this spec now.
	InstanceObserved(ctx context.Context, inst *outpostv1.PostgresInstance) error
	// InstanceDeleted says the instance is gone.
	InstanceDeleted(ctx context.Context, inst *outpostv1.PostgresInstance) error
}

// recordUsage tells the usage recorder, if any, what happened. A failure is
// shown as an event; an observation is made good by the next pass, and a
// failed deletion record is returned so that the deletion is retried.
func (r *InstanceReconciler) recordUsage(ctx context.Context, inst *outpostv1.PostgresInstance, deleted bool) error {
	if r.Usage == nil {
		return nil
	}
	var err error
	if deleted {
		err = r.Usage.InstanceDeleted(ctx, inst)
	} else {
		err = r.Usage.InstanceObserved(ctx, inst)
	}
	if err != nil {
		r.Events.Event(inst, "Warning", "UsageNotRecorded", err.Error())
	}
	return err
}

// UsageLedger records instances in a usage ledger, translating each
// PostgresInstance into what it is billed for.
type UsageLedger struct {
	Ledger *usageexport.Ledger
}

// InstanceObserved records that inst exists with its current spec. Only a
// new instance or a changed shape writes anything.
func (u UsageLedger) InstanceObserved(ctx context.Context, inst *outpostv1.PostgresInstance) error {
	return u.Ledger.Observe(ctx, usageexport.Instance{UID: string(inst.UID), Kind: outpostv1.KindPostgresInstance, Namespace: inst.Namespace, Name: inst.Name}, ShapeOf(inst))
}

// InstanceDeleted records that inst is gone, at its deletionTimestamp when
// it has one.
func (u UsageLedger) InstanceDeleted(ctx context.Context, inst *outpostv1.PostgresInstance) error {
	if d := inst.DeletionTimestamp; d != nil {
		return u.Ledger.DeletedAsRequested(ctx, string(inst.UID), d.Time)
	}
	return u.Ledger.Deleted(ctx, string(inst.UID))
}

// ShapeOf is what a PostgresInstance is billed for: its CPU limit, memory,
// storage and labels.
func ShapeOf(inst *outpostv1.PostgresInstance) usageexport.Shape {
	labels := map[string]string{}
	for k, v := range inst.Labels {
		labels[k] = v
	}
	return usageexport.Shape{
		MilliVCores:  inst.Spec.Resources.CPU.MilliValue(),
		MemoryBytes:  inst.Spec.Resources.Memory.Value(),
		StorageBytes: inst.Spec.Storage.Size.Value(),
		Labels:       labels,
	}
}
