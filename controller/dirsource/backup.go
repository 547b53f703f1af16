package dirsource

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// OnBackups sets the reconciler of Backup manifests and of instances'
// backup schedules. Without it Backups are stored but not run.
func (c *Controller) OnBackups(r *controller.BackupReconciler) { c.backups = r }

// reconcileBackup runs the Backup reconciler on a manifest's object.
func (c *Controller) reconcileBackup(ctx context.Context, u *unstructured.Unstructured, key string) (any, time.Duration, error) {
	b := &outpostv1.Backup{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, b); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", key, err)
	}
	return b, c.backups.Reconcile(ctx, b), nil
}
