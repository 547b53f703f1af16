package kubesource

import (
	"context"
	"errors"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/kuberuntime"
)

// Reasons of an ObjectStore's Ready condition.
const (
	ReasonStoreReachable   = "Reachable"
	ReasonBucketMissing    = "BucketMissing"
	ReasonStoreUnreachable = "Unreachable"
	ReasonStoreConfig      = "InvalidConfiguration"
)

// How often an ObjectStore is checked again.
const (
	storeRecheck       = 5 * time.Minute
	storeRecheckFailed = 30 * time.Second
)

// ObjectStoreReconciler checks that an ObjectStore's bucket is reachable
// with its credentials (creating it when spec.createBucket asks) and says
// so in its Ready condition, so a wrong endpoint or a missing bucket shows
// before the first backup fails.
type ObjectStoreReconciler struct {
	Client client.Client
	// Reader reads the credentials and CA Secrets from the API.
	Reader client.Reader
	Events record.EventRecorder
}

// +kubebuilder:rbac:groups=outpost.dev,resources=objectstores,verbs=get;list;watch
// +kubebuilder:rbac:groups=outpost.dev,resources=objectstores/status,verbs=get;update;patch

// Reconcile checks one ObjectStore.
func (r *ObjectStoreReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var os_ outpostv1.ObjectStore
	if err := r.Client.Get(ctx, req.NamespacedName, &os_); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := os_.Status.DeepCopy()
	status, reason, msg := metav1.ConditionTrue, ReasonStoreReachable, "bucket "+os_.Spec.Bucket+" at "+os_.Spec.Endpoint+" is reachable"
	cfg, done, err := kuberuntime.ResolveObjectStore(ctx, r.Reader, &os_)
	if err == nil {
		checkCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = backup.Open(checkCtx, cfg)
		cancel()
		switch {
		case errors.Is(err, backup.ErrBucketMissing):
			reason = ReasonBucketMissing
		case err != nil:
			reason = ReasonStoreUnreachable
		}
	} else {
		reason = ReasonStoreConfig
	}
	done()
	requeue := storeRecheck
	if err != nil {
		status, msg, requeue = metav1.ConditionFalse, err.Error(), storeRecheckFailed
	}
	os_.Status.ObservedGeneration = os_.Generation
	controller.SetCondition(r.Events, &os_, &os_.Status.Conditions, metav1.Condition{
		Type: outpostv1.ConditionReady, Status: status, Reason: reason, Message: msg,
	})
	return finishPass(ctx, r.Client, &os_, before, &os_.Status, requeue)
}

// SetupWithManager registers the reconciler.
func (r *ObjectStoreReconciler) SetupWithManager(mgr manager.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&outpostv1.ObjectStore{}).Complete(r)
}
