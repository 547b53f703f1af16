package kubesource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/usageexport"
)

// UsageOptions turn metering on: the manager records PostgresInstances in
// controldb's usage ledger and reconciles DataControllers.
type UsageOptions struct {
	// DB is controldb.
	DB *pgxpool.Pool
	// Namespace is the controller's own, where the signing key Secret is.
	Namespace string
	// Version is the controller's, written into streamed batches.
	Version string
	// Clock is the wall clock when nil; tests move it across hours.
	Clock usageexport.Clock
	// TrustControlDBClock says controldb runs on another host (the chart's
	// controldb, or --controldb-url), so its now() checks this host's clock.
	TrustControlDBClock bool
}

// DataControllerReconciler adapts the core's controller.DataControllerReconciler
// to the Kubernetes API: every DataController is reconciled each metering
// interval; the site's one is metered by the core, with the hub token and
// CA from the Secrets the spec names and the orphan sweep over the
// PostgresInstances the apiserver holds, and its status is written to the
// status subresource. Controllers run in the leader only, so only one
// replica samples and streams.
type DataControllerReconciler struct {
	Client client.Client
	// Reader reads Secrets uncached: the hub credentials and the signing
	// key are not Outpost's objects, which the manager caches by label.
	Reader client.Reader
	Events record.EventRecorder
	Log    *slog.Logger
	Keys   *SigningKeySource
	Pool   *pgxpool.Pool
	// Version is the controller's, written into streamed batches.
	Version string
	// Clock is the wall clock when nil.
	Clock usageexport.Clock
	// TrustControlDBClock: see UsageOptions.
	TrustControlDBClock bool
	// Namespaces are the ones the controller watches (and may list
	// PostgresInstances in); empty means every namespace.
	Namespaces []string

	coreOnce sync.Once
	core     *controller.DataControllerReconciler
}

// +kubebuilder:rbac:groups=outpost.dev,resources=datacontrollers,verbs=get;list;watch
// +kubebuilder:rbac:groups=outpost.dev,resources=datacontrollers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=outpost.dev,resources=postgresinstances,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// Reconcile runs one metering pass for a DataController and comes back
// after its metering interval.
func (r *DataControllerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var dc outpostv1.DataController
	if err := r.Client.Get(ctx, req.NamespacedName, &dc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var all outpostv1.DataControllerList
	if err := r.Client.List(ctx, &all); err != nil {
		return ctrl.Result{}, err
	}
	if site := siteOf(all.Items); site != nil && site.UID != dc.UID {
		controller.NotTheSite(&dc, site)
		// Looked at again now and then: if the site's DataController goes,
		// the oldest remaining one becomes the site.
		return ctrl.Result{RequeueAfter: time.Minute}, r.writeStatus(ctx, &dc, dc.Status.DeepCopy())
	}
	key, err := r.Keys.Key(ctx)
	if err != nil {
		controller.NoSigningKey(&dc, err)
		return ctrl.Result{RequeueAfter: 10 * time.Second}, r.writeStatus(ctx, &dc, dc.Status.DeepCopy())
	}
	before := dc.Status.DeepCopy()
	interval, err := r.coreWith(key).Reconcile(ctx, &dc)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("usage status of DataController %s: %w", req.NamespacedName, err)
	}
	if err := r.writeStatus(ctx, &dc, dc.Status.DeepCopy()); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{Requeue: true}, nil
		}
		return ctrl.Result{}, err
	}
	r.announce(&dc, before, &dc.Status)
	return ctrl.Result{RequeueAfter: interval}, nil
}

// coreWith is the core reconciler, metering with key. It is one for the
// reconciler's life, since its meter remembers the newest trusted time.
func (r *DataControllerReconciler) coreWith(key usageexport.SigningKey) *controller.DataControllerReconciler {
	r.coreOnce.Do(func() {
		r.core = controller.NewDataControllerReconciler(&usageexport.SiteMeter{Pool: r.Pool, Key: key, Version: r.Version, Clock: r.Clock, Log: r.Log,
			Metrics: usageMetrics(), TrustControlDBClock: r.TrustControlDBClock}, r)
	})
	return r.core
}

// DeclaredInstances lists every PostgresInstance from the apiserver itself
// (not the cache, which may lag behind a creation), with its deletion
// request if any.
func (r *DataControllerReconciler) DeclaredInstances(ctx context.Context) ([]usageexport.Declared, error) {
	// With watched namespaces the chart grants list in those alone, and a
	// cluster-wide list would be forbidden: the sweep would never run.
	namespaces := r.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	var out []usageexport.Declared
	for _, ns := range namespaces {
		var list outpostv1.PostgresInstanceList
		if err := r.Reader.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("list PostgresInstances (namespace %q): %w", ns, err)
		}
		for _, inst := range list.Items {
			d := usageexport.Declared{UID: string(inst.UID)}
			if inst.DeletionTimestamp != nil {
				t := inst.DeletionTimestamp.Time
				d.DeletionRequested = &t
			}
			out = append(out, d)
		}
	}
	return out, nil
}

// writeStatus writes st as dc's status when it differs from the stored one.
func (r *DataControllerReconciler) writeStatus(ctx context.Context, dc *outpostv1.DataController, st *outpostv1.DataControllerStatus) error {
	var stored outpostv1.DataController
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(dc), &stored); err != nil {
		return client.IgnoreNotFound(err)
	}
	if equality.Semantic.DeepEqual(stored.Status, *st) {
		return nil
	}
	dc.Status = *st
	return r.Client.Status().Update(ctx, dc)
}

// announce records an event for every condition whose reason changed: a
// site going Stale or Overdue, or back to Fresh, or metering failing.
func (r *DataControllerReconciler) announce(dc *outpostv1.DataController, before, after *outpostv1.DataControllerStatus) {
	for _, c := range after.Conditions {
		old := meta.FindStatusCondition(before.Conditions, c.Type)
		if old != nil && old.Reason == c.Reason && old.Status == c.Status {
			continue
		}
		kind := corev1.EventTypeNormal
		// ClockSkew is the one condition that is bad when True.
		if (c.Status == metav1.ConditionTrue) == (c.Type == usageexport.ConditionClockSkew) {
			kind = corev1.EventTypeWarning
		}
		r.Events.Event(dc, kind, c.Reason, c.Type+": "+c.Message)
	}
}

// HubAccess reads the hub token and CA a direct-mode DataController names
// from the Secrets of its namespace.
func (r *DataControllerReconciler) HubAccess(ctx context.Context, dc *outpostv1.DataController) (usageexport.HubAccess, error) {
	var hub usageexport.HubAccess
	if !controller.UsageSite(dc).Streams() {
		return hub, nil
	}
	h := dc.Spec.Connectivity.Hub
	if err := controller.CheckHubTransport(h); err != nil {
		return hub, err
	}
	if h.CredentialsSecret == nil {
		return hub, errors.New("direct mode needs connectivity.hub.credentialsSecret with the site's hub token under \"token\"; usage waits in the backlog")
	}
	token, err := r.secretKey(ctx, dc.Namespace, h.CredentialsSecret.Name, "token", "connectivity.hub.credentialsSecret")
	if err != nil {
		return hub, err
	}
	hub.Token = strings.TrimSpace(string(token))
	if h.CASecret != nil {
		pemBytes, err := r.secretKey(ctx, dc.Namespace, h.CASecret.Name, "ca.crt", "connectivity.hub.caSecret")
		if err != nil {
			return usageexport.HubAccess{}, err
		}
		if hub.Client, err = usageexport.HubClient(pemBytes, fmt.Sprintf("connectivity.hub.caSecret %s/%s, key \"ca.crt\"", dc.Namespace, h.CASecret.Name)); err != nil {
			return usageexport.HubAccess{}, err
		}
		hub.Client.Timeout = time.Minute // a batch, not a year's file
	}
	return hub, nil
}

func (r *DataControllerReconciler) secretKey(ctx context.Context, ns, name, key, field string) ([]byte, error) {
	var s corev1.Secret
	if err := r.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		return nil, fmt.Errorf("%s %s/%s: %w", field, ns, name, err)
	}
	v, ok := s.Data[key]
	if !ok || len(v) == 0 {
		return nil, fmt.Errorf("%s %s/%s has no key %q", field, ns, name, key)
	}
	return v, nil
}

// SetupWithManager registers the reconciler, and the leader's loop that
// creates the signing key at start and samples while there is no
// DataController (whose passes sample otherwise).
func (r *DataControllerReconciler) SetupWithManager(mgr manager.Manager) error {
	if err := mgr.Add(manager.RunnableFunc(r.meterWithoutSite)); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&outpostv1.DataController{}).
		Complete(r)
}

// meterWithoutSite creates the signing key, then samples every
// DefaultInterval while no DataController exists, so the ledger's records
// are written as time passes even before the site is described.
func (r *DataControllerReconciler) meterWithoutSite(ctx context.Context) error {
	r.Keys.ensureAtStart(ctx, r.Log)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(usageexport.DefaultInterval):
		}
		var list outpostv1.DataControllerList
		if err := r.Client.List(ctx, &list); err != nil || len(list.Items) > 0 {
			continue
		}
		key, err := r.Keys.Key(ctx)
		if err != nil {
			continue
		}
		r.coreWith(key).MeterWithoutSite(ctx)
	}
}

// SigningKeySource hands out the site's signing key, creating its Secret on
// first use.
type SigningKeySource struct {
	Client    client.Client
	Reader    client.Reader
	Namespace string

	mu  sync.Mutex
	key *usageexport.SigningKey
}

// Key returns the key, loading or creating it on the first call that
// succeeds.
func (s *SigningKeySource) Key(ctx context.Context) (usageexport.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key != nil {
		return *s.key, nil
	}
	k, err := EnsureSigningKey(ctx, s.Client, s.Reader, s.Namespace)
	if err != nil {
		return k, err
	}
	s.key = &k
	return k, nil
}

// ensureAtStart creates the key as soon as this replica leads, so that
// `outpost usage key` works before any DataController exists; it retries
// until it succeeds or the manager stops.
func (s *SigningKeySource) ensureAtStart(ctx context.Context, log *slog.Logger) {
	for wait := time.Second; ; wait = min(2*wait, time.Minute) {
		k, err := s.Key(ctx)
		if err == nil {
			log.Info("usage signing key ready", "secret", s.Namespace+"/"+SigningKeySecretName, "fingerprint", usageexport.Fingerprint(k.Public()))
			return
		}
		log.Error("cannot create the usage signing key; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

var (
	metricsOnce sync.Once
	metrics     *usageexport.Metrics
)

// usageMetrics are the usage gauges, registered once in controller-runtime's
// registry, which the manager's metrics endpoint serves.
func usageMetrics() *usageexport.Metrics {
	metricsOnce.Do(func() {
		metrics = usageexport.NewMetrics()
		for _, c := range metrics.Collectors() {
			ctrlmetrics.Registry.MustRegister(c)
		}
	})
	return metrics
}
