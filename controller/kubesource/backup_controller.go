package kubesource

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	core "github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// BackupReconciler adapts the core's Backup reconcile to controller-runtime.
type BackupReconciler struct {
	Client client.Client
	Core   *core.BackupReconciler
}

// +kubebuilder:rbac:groups=outpost.dev,resources=backups,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=outpost.dev,resources=postgresinstances/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=outpost.dev,resources=backups/status,verbs=get;update;patch

// Reconcile moves one Backup along and writes its status.
func (r *BackupReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var b outpostv1.Backup
	if err := r.Client.Get(ctx, req.NamespacedName, &b); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !b.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	before := b.Status.DeepCopy()
	requeue := r.Core.Reconcile(ctx, &b)
	return finishPass(ctx, r.Client, &b, before, &b.Status, requeue)
}

// SetupWithManager registers the reconciler.
func (r *BackupReconciler) SetupWithManager(mgr manager.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&outpostv1.Backup{}).Complete(r)
}

// BackupScheduleReconciler turns instances' spec.backup.schedule into
// Backup objects, owned by the instance, and keeps the backup fields of
// PostgresInstance status (lastBackup, lastBackupTime,
// firstRecoverabilityPoint) up to date. It is a controller of its own so
// that the instance reconciler stays the runtime's.
type BackupScheduleReconciler struct {
	Client client.Client
	Core   *core.BackupReconciler
}

// scheduleRecheck is how often an instance with a schedule is looked at:
// cron's finest step is a minute.
const scheduleRecheck = 15 * time.Second

// Reconcile creates the Backup a due schedule asks for.
func (r *BackupScheduleReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, err error) {
	var inst outpostv1.PostgresInstance
	if err := r.Client.Get(ctx, req.NamespacedName, &inst); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if inst.Spec.Backup == nil || !inst.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(inst.DeepCopy())
	before := inst.Status.DeepCopy()
	r.Core.ObserveInstance(&inst)
	// Whatever fails below, the status is written: ObserveInstance may
	// have taken a finished verification's result out of memory, and a
	// verification started here has its slot recorded only in it.
	defer func() {
		if statusChanged(before, &inst.Status) {
			err = errors.Join(err, r.Client.Status().Patch(ctx, &inst, patch))
		}
	}()
	// Scheduled Backups whose backup retention deleted go, so they do not
	// pile up; a completed backup's retention brings us here.
	var list outpostv1.BackupList
	if err := r.Client.List(ctx, &list, client.InNamespace(inst.Namespace), client.MatchingLabels{core.LabelScheduledBy: inst.Name}); err != nil {
		return ctrl.Result{}, err
	}
	for i := range list.Items {
		if r.Core.Expired(&list.Items[i]) {
			if err := r.Client.Delete(ctx, &list.Items[i]); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, err
			}
		}
	}
	// The slot's Backup is created before the status records the slot as
	// taken; an existing one is that slot's, created before a lost status
	// write (see core.BackupReconciler.Schedule).
	if b := r.Core.Schedule(&inst); b != nil {
		err := controllerutil.SetControllerReference(&inst, b, r.Client.Scheme())
		if err == nil {
			if err = r.Client.Create(ctx, b); apierrors.IsAlreadyExists(err) {
				err = nil
			}
		}
		if err != nil {
			core.Unschedule(&inst, before.Backups)
			return ctrl.Result{}, fmt.Errorf("create scheduled Backup %s: %w", b.Name, err)
		}
	}
	if inst.Spec.Backup.Schedule == "" && inst.Spec.Backup.IncrementalSchedule == "" && inst.Spec.Backup.Verification == nil {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: scheduleRecheck}, nil
}

// SetupWithManager registers the reconciler; a change to a Backup (it
// completed, say) brings its instance into the queue, so the instance's
// status follows at once.
func (r *BackupScheduleReconciler) SetupWithManager(mgr manager.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("backupschedule").
		For(&outpostv1.PostgresInstance{}).
		Watches(&outpostv1.Backup{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []reconcile.Request {
			b, ok := obj.(*outpostv1.Backup)
			if !ok {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: b.Namespace, Name: b.Spec.Instance.Name}}}
		})).
		Complete(r)
}

// setupBackups registers the Backup, schedule and ObjectStore reconcilers.
// Backups run where the runtime runs the instance (in the pod, or on this
// host); verifier may be nil (see Options.Verifier).
func setupBackups(mgr manager.Manager, runner core.BackupRunner, verifier core.RestoreVerifier) error {
	events := mgr.GetEventRecorderFor("outpost-controller")
	if err := (&ObjectStoreReconciler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Events: events}).SetupWithManager(mgr); err != nil {
		return err
	}
	c := mgr.GetClient()
	backups := &core.BackupReconciler{
		Runner:   runner,
		Verifier: verifier,
		Events:   events,
		Metrics:  backupMetrics(),
		Instances: func(ctx context.Context, namespace, name string) (*outpostv1.PostgresInstance, error) {
			inst := &outpostv1.PostgresInstance{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, inst); err != nil {
				if apierrors.IsNotFound(err) {
					return nil, fmt.Errorf("no PostgresInstance %s/%s", namespace, name)
				}
				return nil, err
			}
			return inst, nil
		},
	}
	if err := (&BackupReconciler{Client: c, Core: backups}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&BackupScheduleReconciler{Client: c, Core: backups}).SetupWithManager(mgr)
}

var (
	backupMetricsOnce sync.Once
	backupMetricsVal  *core.BackupMetrics
)

// backupMetrics are this process's WAL archiving and verification
// metrics, registered once with controller-runtime's registry, which the
// manager's metrics endpoint serves.
func backupMetrics() *core.BackupMetrics {
	backupMetricsOnce.Do(func() {
		backupMetricsVal = core.NewBackupMetrics()
		ctrlmetrics.Registry.MustRegister(backupMetricsVal)
	})
	return backupMetricsVal
}
