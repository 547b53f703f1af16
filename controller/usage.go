package controller

import (
	"context"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// UsageRecorder meters instances. usageexport.Ledger implements it; both
// calls are idempotent, so calling them on every pass is cheap and a missed
// call is made good by the next one.
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
