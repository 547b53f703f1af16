package kubesource

import (
	"context"
	"log/slog"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	core "github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// Finalizer keeps a PostgresInstance in the API until its runtime has
// stopped the server and kept or removed its data as deletionPolicy says.
const Finalizer = "outpost.dev/instance"

// InstanceReconciler adapts the reconcile core to controller-runtime: it
// fetches the PostgresInstance, runs the core, and writes the status back
// through the status subresource.
type InstanceReconciler struct {
	Client client.Client
	Core   *core.InstanceReconciler
	Log    *slog.Logger
	// MinRequeue raises the core's "look again soon" while an instance
	// comes up. A runtime whose objects the manager watches (kuberuntime)
	// is woken by their changes and needs no quick polling; a runtime of
	// local processes is polled at the core's pace (MinRequeue 0).
	MinRequeue time.Duration
}

// The RBAC this reconciler needs, with the kubernetes runtime. The Helm
// chart's ClusterRole (charts/outpost/templates/rbac.yaml) grants exactly
// this; test/chart checks that it is enough and that less is not.
//
// +kubebuilder:rbac:groups=outpost.dev,resources=postgresinstances,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=outpost.dev,resources=postgresinstances/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=outpost.dev,resources=postgresinstances/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets;configmaps;services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconcile brings one PostgresInstance towards its spec.
func (r *InstanceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var inst outpostv1.PostgresInstance
	if err := r.Client.Get(ctx, req.NamespacedName, &inst); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !inst.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &inst)
	}
	// The finalizer goes on before anything is created, so that no server
	// can exist whose deletion the controller would not see.
	if !controllerutil.ContainsFinalizer(&inst, Finalizer) {
		patch := client.MergeFrom(inst.DeepCopy())
		controllerutil.AddFinalizer(&inst, Finalizer)
		if err := r.Client.Patch(ctx, &inst, patch); err != nil {
			return ctrl.Result{}, err
		}
	}

	before := inst.Status.DeepCopy()
	requeue := r.Core.Reconcile(ctx, &inst)
	if requeue > 0 && requeue < r.MinRequeue {
		requeue = r.MinRequeue
	}
	return finishPass(ctx, r.Client, &inst, before, &inst.Status, requeue)
}

// finalize stops the instance through the runtime, then lets the API delete
// the object. A failure keeps the finalizer, so the next attempt retries.
func (r *InstanceReconciler) finalize(ctx context.Context, inst *outpostv1.PostgresInstance) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(inst, Finalizer) {
		return ctrl.Result{}, nil
	}
	if inst.Status.Phase != outpostv1.InstanceDeleting {
		inst.Status.Phase = outpostv1.InstanceDeleting
		meta.SetStatusCondition(&inst.Status.Conditions, metav1.Condition{
			Type: outpostv1.ConditionReady, Status: metav1.ConditionFalse, Reason: "Deleting",
			Message: "stopping the server", ObservedGeneration: inst.Generation,
		})
		if err := r.Client.Status().Update(ctx, inst); err != nil && !apierrors.IsNotFound(err) {
			if apierrors.IsConflict(err) {
				return ctrl.Result{Requeue: true}, nil
			}
			return ctrl.Result{}, err
		}
	}
	if err := r.Core.Delete(ctx, inst); err != nil {
		r.Log.Error("deleting instance failed; retrying", "instance", inst.Namespace+"/"+inst.Name, "err", err)
		return ctrl.Result{RequeueAfter: 5 * time.Second}, nil
	}
	patch := client.MergeFrom(inst.DeepCopy())
	controllerutil.RemoveFinalizer(inst, Finalizer)
	return ctrl.Result{}, client.IgnoreNotFound(r.Client.Patch(ctx, inst, patch))
}

// SetupWithManager registers the reconciler; changes to the objects an
// instance owns (a StatefulSet becoming ready, a Service deleted by hand)
// bring the instance back into the queue.
func (r *InstanceReconciler) SetupWithManager(mgr manager.Manager, workers int) error {
	if workers <= 0 {
		workers = 4
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&outpostv1.PostgresInstance{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.Secret{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}

func logrFromSlog(l *slog.Logger) logr.Logger { return logr.FromSlogHandler(l.Handler()) }
