package kubesource

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	core "github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// FeatureStoreReconciler adapts the core's feature-store reconcile to
// controller-runtime. Deleting a FeatureStore leaves its tables in place
// unless its deletionPolicy is Delete, as on a single host; only such a
// store carries a finalizer, which stays until its tables are dropped.
type FeatureStoreReconciler struct {
	Client client.Client
	Core   *core.FeatureStoreReconciler
}

// FeatureStoreFinalizer keeps a FeatureStore with deletionPolicy Delete in
// the API until its tables are dropped.
const FeatureStoreFinalizer = "outpost.dev/featurestore"

// +kubebuilder:rbac:groups=outpost.dev,resources=featurestores,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=outpost.dev,resources=featurestores/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=outpost.dev,resources=featurestores/finalizers,verbs=update

// Reconcile shapes one feature store's tables and writes its status.
func (r *FeatureStoreReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var fs outpostv1.FeatureStore
	if err := r.Client.Get(ctx, req.NamespacedName, &fs); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !fs.DeletionTimestamp.IsZero() {
		if !controllerutil.ContainsFinalizer(&fs, FeatureStoreFinalizer) {
			return ctrl.Result{}, nil
		}
		if err := r.Core.Delete(ctx, &fs); err != nil {
			// Logged by controller-runtime, and retried with backoff.
			return ctrl.Result{}, err
		}
		patch := client.MergeFrom(fs.DeepCopy())
		controllerutil.RemoveFinalizer(&fs, FeatureStoreFinalizer)
		return ctrl.Result{}, client.IgnoreNotFound(r.Client.Patch(ctx, &fs, patch))
	}
	// The finalizer follows the policy, so a store switched to Retain can
	// be deleted without waiting for its database.
	wantFinalizer := fs.Spec.DeletionPolicy == outpostv1.DeletionDelete
	if wantFinalizer != controllerutil.ContainsFinalizer(&fs, FeatureStoreFinalizer) {
		patch := client.MergeFrom(fs.DeepCopy())
		if wantFinalizer {
			controllerutil.AddFinalizer(&fs, FeatureStoreFinalizer)
		} else {
			controllerutil.RemoveFinalizer(&fs, FeatureStoreFinalizer)
		}
		if err := r.Client.Patch(ctx, &fs, patch); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	before := fs.Status.DeepCopy()
	// An index build's progress goes to the status as it runs; each
	// update moves fs's resourceVersion along, so the last one does not
	// conflict. A failed progress update only delays the report.
	requeue := r.Core.ReconcileWithProgress(ctx, &fs, func(fs *outpostv1.FeatureStore) {
		_ = r.Client.Status().Update(ctx, fs)
	})
	return finishPass(ctx, r.Client, &fs, before, &fs.Status, requeue)
}

// SetupWithManager registers the reconciler. A change to a PostgresInstance
// (it became Running, say) brings the feature stores on it into the queue,
// so a store created before its instance is ready does not wait for a
// timer.
func (r *FeatureStoreReconciler) SetupWithManager(mgr manager.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&outpostv1.FeatureStore{}).
		Watches(&outpostv1.PostgresInstance{}, handler.EnqueueRequestsFromMapFunc(r.storesOn)).
		Complete(r)
}

func (r *FeatureStoreReconciler) storesOn(ctx context.Context, obj client.Object) []reconcile.Request {
	var list outpostv1.FeatureStoreList
	if err := r.Client.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, fs := range list.Items {
		if fs.Spec.Instance.Name == obj.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&fs)})
		}
	}
	return reqs
}
