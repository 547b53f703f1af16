package kuberuntime

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/postgres"
)

// Runtime keeps each instance's Secret, ConfigMap, Service and StatefulSet.
type Runtime struct {
	Client client.Client
	Scheme *runtime.Scheme
	Pods   PodOptions
	Log    *slog.Logger
	// ManagerURL overrides where an instance's manager is reached, for
	// its archiver's status and for backups (default: its Service, see
	// ManagerURL).
	ManagerURL func(*outpostv1.PostgresInstance) string
	// Reader reads, uncached, what the manager's cache does not hold: the
	// age key and ObjectStore credential Secrets users create, and the
	// site CA's Secret in the controller's namespace, which may not be a
	// watched one. Backups read the instance's token through it too, so a
	// token just written is never missed. Nil means Client.
	Reader client.Reader
	// Namespace is the controller's own, where the site CA's Secret is;
	// empty means "default".
	Namespace string
	// CertDir is where the controller keeps its client certificate;
	// empty means a new temporary directory.
	CertDir string
	// DatabaseEndpoint, when set, replaces the instance's Service (host and
	// port) for DatabaseURL: for a controller outside the cluster, such as
	// a test's, where Service names do not resolve.
	DatabaseEndpoint func(*outpostv1.PostgresInstance) (host string, port int)

	caMu sync.Mutex
	ca   *postgres.CA
}

var _ controller.Runtime = (*Runtime)(nil)

// EnsureInstance creates or updates the instance's objects and reports
// Ready from the StatefulSet's status.
func (r *Runtime) EnsureInstance(ctx context.Context, inst *outpostv1.PostgresInstance) (controller.InstanceObservation, error) {
	obs := controller.InstanceObservation{Endpoint: Endpoint(inst), CredentialsSecret: AppSecretName(inst)}
	if err := r.ensureSecrets(ctx, inst); err != nil {
		return obs, err
	}
	bk, err := r.backupOf(ctx, inst)
	if err != nil {
		return obs, err
	}
	rec, err := r.recoveryOf(ctx, inst)
	if err != nil {
		return obs, err
	}
	data, err := configMapData(inst, bk, rec.config())
	if err != nil {
		return obs, err
	}
	cm := &corev1.ConfigMap{ObjectMeta: r.meta(inst, ConfigMapName(inst))}
	if err := r.apply(ctx, inst, cm, data, func() { cm.Data = data }); err != nil {
		return obs, fmt.Errorf("configmap %s: %w", cm.Name, err)
	}
	svcSpec := serviceSpec(inst)
	svc := &corev1.Service{ObjectMeta: r.meta(inst, ServiceName(inst))}
	if err := r.apply(ctx, inst, svc, svcSpec, func() {
		// ClusterIP is the apiserver's to choose and cannot change.
		svcSpec.ClusterIP, svcSpec.ClusterIPs = svc.Spec.ClusterIP, svc.Spec.ClusterIPs
		svc.Spec.Type, svc.Spec.Selector, svc.Spec.Ports = svcSpec.Type, svcSpec.Selector, svcSpec.Ports
	}); err != nil {
		return obs, fmt.Errorf("service %s: %w", svc.Name, err)
	}
	stsSpec := statefulSetSpec(inst, r.Pods)
	addBackup(&stsSpec, inst, bk)
	addRecovery(&stsSpec, rec)
	sts := &appsv1.StatefulSet{ObjectMeta: r.meta(inst, StatefulSetName(inst))}
	if err := r.apply(ctx, inst, sts, stsSpec, func() {
		claims := sts.Spec.VolumeClaimTemplates
		if sts.CreationTimestamp.IsZero() {
			claims = volumeClaimTemplates(inst)
		}
		sts.Spec = stsSpec
		sts.Spec.VolumeClaimTemplates = claims
	}); err != nil {
		return obs, fmt.Errorf("statefulset %s: %w", sts.Name, err)
	}
	obs = observe(sts, obs)
	if obs.Ready {
		if obs.Archiving, err = r.ReadArchiver(ctx, inst); err != nil {
			r.Log.Warn("cannot read the WAL archiver's status", "instance", inst.Namespace+"/"+inst.Name, "err", err)
		}
	}
	return obs, nil
}

// observe reads readiness from the StatefulSet, which the kubelet's
// readiness probe (the instance manager's /readyz) feeds.
func observe(sts *appsv1.StatefulSet, obs controller.InstanceObservation) controller.InstanceObservation {
	st := sts.Status
	switch {
	case st.ObservedGeneration == 0:
		obs.Reason, obs.Message = "PodNotReady", fmt.Sprintf("StatefulSet %s has no status yet: waiting for the StatefulSet controller to create pod %s-0", sts.Name, sts.Name)
	case st.ObservedGeneration < sts.Generation:
		obs.Reason, obs.Message = "Updating", fmt.Sprintf("StatefulSet %s has not yet acted on its latest spec", sts.Name)
	case st.ReadyReplicas < 1:
		obs.Reason, obs.Message = "PodNotReady", fmt.Sprintf("StatefulSet %s: %d of 1 pods ready; see `kubectl describe pod %s-0`", sts.Name, st.ReadyReplicas, sts.Name)
	case st.UpdatedReplicas < 1 && st.CurrentRevision != st.UpdateRevision:
		obs.Reason, obs.Message = "Updating", fmt.Sprintf("StatefulSet %s is rolling its pod to the new spec", sts.Name)
	default:
		obs.Ready = true
	}
	return obs
}

func (r *Runtime) reader() client.Reader {
	if r.Reader != nil {
		return r.Reader
	}
	return r.Client
}

func (r *Runtime) meta(inst *outpostv1.PostgresInstance, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: inst.Namespace}
}

// apply creates obj or updates it when the desired state (summarised by
// desired) changed since Outpost last wrote it. mutate sets the desired
// fields on obj as read from the API.
func (r *Runtime) apply(ctx context.Context, inst *outpostv1.PostgresInstance, obj client.Object, desired any, mutate func()) error {
	hash := hashOf(desired)
	op, err := controllerutil.CreateOrUpdate(ctx, r.Client, obj, func() error {
		if obj.GetAnnotations()[specHashKey] != hash || !ownedBy(obj, inst) {
			mutate()
		}
		obj.SetLabels(mergeMaps(obj.GetLabels(), Labels(inst)))
		obj.SetAnnotations(mergeMaps(obj.GetAnnotations(), map[string]string{specHashKey: hash}))
		return controllerutil.SetControllerReference(inst, obj, r.Scheme)
	})
	if err != nil {
		return err
	}
	if op != controllerutil.OperationResultNone {
		r.Log.Debug("instance object written", "instance", inst.Namespace+"/"+inst.Name,
			"kind", fmt.Sprintf("%T", obj), "name", obj.GetName(), "operation", op)
	}
	return nil
}

// DeleteInstance removes the StatefulSet, Service and ConfigMap at once
// (garbage collection would, later). With deletionPolicy Delete the
// StatefulSet's PVC retention policy deletes the volume and the Secret
// goes; with Retain the volume stays and so does the Secret, released from
// the instance so that garbage collection leaves it: the retained data
// is of no use without its passwords.
func (r *Runtime) DeleteInstance(ctx context.Context, inst *outpostv1.PostgresInstance) error {
	background := client.PropagationPolicy(metav1.DeletePropagationBackground)
	for _, obj := range []client.Object{
		&appsv1.StatefulSet{ObjectMeta: r.meta(inst, StatefulSetName(inst))},
		&corev1.Service{ObjectMeta: r.meta(inst, ServiceName(inst))},
		&corev1.ConfigMap{ObjectMeta: r.meta(inst, ConfigMapName(inst))},
	} {
		if err := r.Client.Delete(ctx, obj, background); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete %s: %w", obj.GetName(), err)
		}
	}
	for _, name := range secretNames(inst) {
		if err := r.deleteOrReleaseSecret(ctx, inst, name); err != nil {
			return err
		}
	}
	if inst.Spec.DeletionPolicy == outpostv1.DeletionDelete {
		r.Log.Info("instance deleted with its data", "instance", inst.Namespace+"/"+inst.Name)
	} else {
		r.Log.Info("instance deleted; its volume and Secrets are kept (deletionPolicy Retain)",
			"instance", inst.Namespace+"/"+inst.Name, "secrets", secretNames(inst))
	}
	return nil
}

// deleteOrReleaseSecret deletes one Secret of an instance with
// deletionPolicy Delete; with Retain it releases it from the instance, so
// that garbage collection leaves it: retained data is of no use without
// its passwords.
func (r *Runtime) deleteOrReleaseSecret(ctx context.Context, inst *outpostv1.PostgresInstance, name string) error {
	secret := &corev1.Secret{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: inst.Namespace, Name: name}, secret); err != nil {
		return client.IgnoreNotFound(err)
	}
	if inst.Spec.DeletionPolicy == outpostv1.DeletionDelete {
		if err := r.Client.Delete(ctx, secret); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete %s: %w", secret.Name, err)
		}
		return nil
	}
	if ownedBy(secret, inst) {
		patch := client.MergeFrom(secret.DeepCopy())
		if err := controllerutil.RemoveControllerReference(inst, secret, r.Scheme); err != nil {
			return err
		}
		if err := r.Client.Patch(ctx, secret, patch); err != nil {
			return fmt.Errorf("release %s: %w", secret.Name, err)
		}
	}
	return nil
}

func ownedBy(obj client.Object, inst *outpostv1.PostgresInstance) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.UID == inst.UID {
			return true
		}
	}
	return false
}

func mergeMaps(base, extra map[string]string) map[string]string {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, extra)
	return out
}
