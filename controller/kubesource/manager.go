package kubesource

import (
	"fmt"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// ManagedByLabel marks every object Outpost creates for an instance; the
// manager caches only objects that carry it, so a cluster full of other
// Secrets and ConfigMaps costs the controller no memory.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "outpost"
)

// LeaderElectionID names the Lease the replicas compete for.
const LeaderElectionID = "outpost-controller.outpost.dev"

// Options configure a manager.
type Options struct {
	// Config reaches the apiserver.
	Config *rest.Config
	// NewRuntime builds the runtime from the manager's client, so a
	// runtime that creates Kubernetes objects shares its cache. It is
	// called once, by NewManager.
	NewRuntime func(c client.Client, scheme *runtime.Scheme) (controller.Runtime, error)
	// Verifier runs spec.backup.verification; nil (the kubernetes
	// runtime, which has nowhere to restore into a throw-away server yet)
	// leaves it Unsupported. See controller.Runtime.
	Verifier controller.RestoreVerifier
	// Namespaces limits what the manager watches; empty means every
	// namespace (cluster-wide RBAC is then needed).
	Namespaces []string
	// LeaderElection makes the manager act only while it holds the Lease
	// LeaderElectionID in LeaderElectionNamespace.
	LeaderElection          bool
	LeaderElectionNamespace string
	// MetricsAddr serves Prometheus metrics; "0" or empty turns them off.
	MetricsAddr string
	// HealthAddr serves /healthz and /readyz; empty turns them off.
	HealthAddr string
	// Log receives the controller's structured log.
	Log *slog.Logger
	// MinRequeue: see InstanceReconciler.MinRequeue.
	MinRequeue time.Duration
	// MaxConcurrentReconciles is how many instances are reconciled at
	// once; 0 means 4.
	MaxConcurrentReconciles int
	// Usage, when set, meters PostgresInstances into controldb and
	// reconciles DataControllers (see setupUsage).
	Usage *UsageOptions
}

// Scheme knows the built-in kinds and Outpost's.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := outpostv1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// NewManager is where the Kubernetes source meets a runtime and the core:
// it builds a manager, the runtime (opts.NewRuntime), and registers the
// PostgresInstance, FeatureStore, Backup, backup schedule and ObjectStore
// reconcilers, each adapting Kubernetes objects to the core's reconciler
// over that runtime, and metering when opts.Usage is set. Start it with
// mgr.Start(ctx); it returns when ctx ends.
func NewManager(opts Options) (manager.Manager, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	log.SetLogger(logrFromSlog(opts.Log))
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	managed := labels.SelectorFromSet(labels.Set{ManagedByLabel: ManagedByValue})
	cacheOpts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:      {Label: managed},
			&corev1.ConfigMap{}:   {Label: managed},
			&corev1.Service{}:     {Label: managed},
			&appsv1.StatefulSet{}: {Label: managed},
		},
	}
	if len(opts.Namespaces) > 0 {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range opts.Namespaces {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	metricsAddr := opts.MetricsAddr
	if metricsAddr == "" {
		metricsAddr = "0"
	}
	cfg := rest.CopyConfig(opts.Config)
	if cfg.QPS == 0 {
		// client-go's default of 5 requests a second would take minutes
		// to create the handful of objects of each of hundreds of
		// instances; the apiserver's priority and fairness protects it.
		cfg.QPS, cfg.Burst = 100, 200
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:                        scheme,
		Cache:                         cacheOpts,
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:        opts.HealthAddr,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		// Controller names are checked process-wide; a process that builds
		// more than one manager (tests do) would otherwise fail on the
		// second.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, fmt.Errorf("controller manager: %w", err)
	}
	if opts.HealthAddr != "" {
		if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
			return nil, err
		}
		if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
			return nil, err
		}
	}
	rt, err := opts.NewRuntime(mgr.GetClient(), scheme)
	if err != nil {
		return nil, err
	}
	ledger, err := setupUsage(mgr, opts)
	if err != nil {
		return nil, err
	}
	r := &InstanceReconciler{
		Client: mgr.GetClient(),
		Core: &controller.InstanceReconciler{
			Runtime: rt,
			Events:  mgr.GetEventRecorderFor("outpost-controller"),
			Usage:   ledger,
			Metrics: backupMetrics(),
		},
		Log:        opts.Log,
		MinRequeue: opts.MinRequeue,
	}
	if err := r.SetupWithManager(mgr, opts.MaxConcurrentReconciles); err != nil {
		return nil, err
	}
	fs := &FeatureStoreReconciler{
		Client: mgr.GetClient(),
		Core:   &controller.FeatureStoreReconciler{Databases: rt, Events: mgr.GetEventRecorderFor("outpost-controller")},
	}
	if err := fs.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := setupBackups(mgr, rt, opts.Verifier); err != nil {
		return nil, err
	}
	return mgr, nil
}
