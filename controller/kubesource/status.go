package kubesource

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// finishPass stores obj's status when the pass changed it (before is the
// status as read), and asks to come back after requeue. A conflict means
// someone changed the object since we read it; the watch brings the new
// version and we look again.
func finishPass(ctx context.Context, c client.Client, obj client.Object, before, after any, requeue time.Duration) (ctrl.Result, error) {
	if statusChanged(before, after) {
		if err := c.Status().Update(ctx, obj); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{Requeue: true}, nil
			}
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}
