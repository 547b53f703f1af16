package kubesource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outpostdata/outpost/controller"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/kuberuntime"
	"github.com/outpostdata/outpost/controller/localruntime"
)

// Runtime kinds a controller can drive.
const (
	RuntimeKubernetes = "kubernetes"
	RuntimeLocal      = "local"
)

// ControllerOptions configure `outpost controller --source kubernetes`.
type ControllerOptions struct {
	Manager Options // NewRuntime and Verifier are filled in by RunController
	// Runtime is RuntimeKubernetes or RuntimeLocal.
	Runtime string
	// InstanceImage and its pull policy, for the kubernetes runtime.
	InstanceImage   string
	ImagePullPolicy corev1.PullPolicy
	// StateDir holds the local runtime's instances and, without
	// ControlDBURL, its own controldb (StateDir/controldb).
	StateDir string
	// ControlDBURL points at any PostgreSQL to keep the controller's
	// state in; empty with the local runtime starts one under StateDir.
	ControlDBURL string
	// ControlDBSecret, when ControlDBURL is empty, names the Secret (and
	// Service) of the in-chart controldb in Namespace; the controller
	// creates it with fresh passwords if it does not exist.
	ControlDBSecret string
	// FirstPort is where local instance ports start; 0 means 5432.
	FirstPort int
	// Namespace is the controller's own: the usage signing key's Secret
	// is kept there.
	Namespace string
	// Version is the controller's, written into usage batches.
	Version string
}

// controllerNamespace is Namespace, or "default" when unset.
func (opts *ControllerOptions) controllerNamespace() string {
	if opts.Namespace == "" {
		return "default"
	}
	return opts.Namespace
}

// meter turns metering on for the manager once controldb is known.
func (opts *ControllerOptions) meter(db *controldb.DB) {
	ns := opts.controllerNamespace()
	opts.Manager.Usage = &UsageOptions{DB: db.Pool, Namespace: ns, Version: opts.Version, TrustControlDBClock: onAnotherHost(opts.ControlDBURL)}
}

// RunController is `outpost controller`: it opens controldb, builds the
// runtime opts.Runtime names for NewManager, which wires it to the core,
// and runs the manager until ctx ends, then stops what the runtime runs
// locally and controldb.
func RunController(ctx context.Context, cfg *rest.Config, opts ControllerOptions) (err error) {
	log := opts.Manager.Log
	if log == nil {
		log = slog.Default()
		opts.Manager.Log = log
	}
	opts.Manager.Config = cfg

	var db *controldb.DB
	if opts.ControlDBURL == "" && opts.ControlDBSecret != "" {
		if opts.ControlDBURL, err = ControlDBSecretURL(ctx, cfg, opts.controllerNamespace(), opts.ControlDBSecret); err != nil {
			return fmt.Errorf("--controldb-secret: %w", err)
		}
		go keepControlDBCertFresh(ctx, cfg, opts.controllerNamespace(), opts.ControlDBSecret, log)
	}
	if opts.ControlDBURL != "" {
		if db, err = controldb.OpenWhenReady(ctx, opts.ControlDBURL, log); err != nil {
			return fmt.Errorf("--controldb-url: %w", err)
		}
		defer db.Close()
	}

	// The source × runtime choice: the Kubernetes API with instances in
	// pods, or on this host.
	switch opts.Runtime {
	case RuntimeKubernetes:
		if opts.InstanceImage == "" {
			return errors.New("--instance-image: the kubernetes runtime needs the image its pods run")
		}
		if db != nil {
			opts.meter(db)
		} else {
			log.Warn("no controldb (--controldb-url): usage is not metered and DataControllers are not reconciled")
		}
		// Owned objects wake the reconciler when they change.
		opts.Manager.MinRequeue = 10 * time.Second
		opts.Manager.NewRuntime = func(c client.Client, s *runtime.Scheme) (controller.Runtime, error) {
			// Age keys and the site CA are Secrets the cache does not hold.
			reader, err := client.New(cfg, client.Options{Scheme: s})
			if err != nil {
				return nil, err
			}
			return &kuberuntime.Runtime{Client: c, Reader: reader, Scheme: s, Log: log, Namespace: opts.controllerNamespace(),
				Pods: kuberuntime.PodOptions{Image: opts.InstanceImage, ImagePullPolicy: opts.ImagePullPolicy}}, nil
		}
	case RuntimeLocal:
		var stateDir string
		if stateDir, err = filepath.Abs(opts.StateDir); err != nil {
			return fmt.Errorf("--state-dir: %w", err)
		}
		if db == nil {
			var local *controldb.Local
			if local, err = controldb.StartLocal(ctx, filepath.Join(stateDir, "controldb"), log); err != nil {
				return err
			}
			defer func() { err = errors.Join(err, local.Stop()) }()
			db = local.DB
		}
		opts.meter(db)
		rt := &localruntime.Runtime{StateDir: stateDir, Ports: db, FirstPort: opts.FirstPort, Log: log}
		defer func() { err = errors.Join(err, rt.Shutdown()) }()
		opts.Manager.NewRuntime = func(client.Client, *runtime.Scheme) (controller.Runtime, error) { return rt, nil }
		opts.Manager.Verifier = rt
	default:
		return fmt.Errorf("--runtime: %q is not a runtime; use %s or %s", opts.Runtime, RuntimeKubernetes, RuntimeLocal)
	}
	mgr, err := NewManager(opts.Manager)
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}
