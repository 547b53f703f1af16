package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/outpostdata/outpost/controller/instancemanager"
	"github.com/outpostdata/outpost/controller/kubesource"
)

func newControllerCommand(sh *singleHostFlags) *cobra.Command {
	var (
		source, kubeconfig, logLevel, pullPolicy string
		opts                                     kubesource.ControllerOptions
	)
	cmd := &cobra.Command{
		Use:   "controller --source kubernetes --runtime kubernetes|local",
		Short: "Run the data controller against the Kubernetes API",
		Long: `Runs the controller until interrupted. With --source kubernetes it watches
PostgresInstances in the Kubernetes API (--kubeconfig, or the pod's service
account). --runtime kubernetes runs each instance as a StatefulSet whose pod
runs 'outpost instance run' from --instance-image; --runtime local runs them as
postgres processes on this host under --state-dir. The directory source runs
with 'outpost up'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if source != "kubernetes" {
				if strings.HasPrefix(source, "dir=") {
					return fmt.Errorf("--source %s: the directory source runs with `outpost up --state-dir DIR`", source)
				}
				return fmt.Errorf("--source %q: use kubernetes", source)
			}
			log, err := newLogger(cmd, logLevel)
			if err != nil {
				return err
			}
			cfg, err := restConfig(kubeconfig)
			if err != nil {
				return err
			}
			opts.Manager.Log = log
			opts.StateDir = sh.stateDir
			opts.Version = Version()
			opts.ImagePullPolicy = corev1.PullPolicy(pullPolicy)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return kubesource.RunController(ctx, cfg, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&source, "source", "kubernetes", "where desired state comes from: kubernetes")
	f.StringVar(&opts.Runtime, "runtime", kubesource.RuntimeKubernetes, "where instances run: kubernetes or local")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file; empty means $KUBECONFIG or the in-cluster service account")
	f.StringSliceVar(&opts.Manager.Namespaces, "watch-namespace", nil, "namespaces to watch (repeatable); none means every namespace")
	f.BoolVar(&opts.Manager.LeaderElection, "leader-elect", false, "act only while holding the leader Lease, so replicas never both act")
	f.StringVar(&opts.Manager.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader Lease; empty means the pod's own")
	f.StringVar(&opts.Manager.MetricsAddr, "metrics-bind-address", "0", "address of the Prometheus metrics endpoint; 0 turns it off")
	f.StringVar(&opts.Manager.HealthAddr, "health-probe-bind-address", "", "address of /healthz and /readyz; empty turns them off")
	f.IntVar(&opts.Manager.MaxConcurrentReconciles, "workers", 4, "instances reconciled at once")
	f.StringVar(&opts.InstanceImage, "instance-image", "", "image of instance pods (kubernetes runtime)")
	f.StringVar(&pullPolicy, "instance-image-pull-policy", "IfNotPresent", "pull policy of instance pods: Always, IfNotPresent or Never")
	f.StringVar(&opts.ControlDBURL, "controldb-url", os.Getenv("OUTPOST_CONTROLDB_URL"), "PostgreSQL URL of controldb (default $OUTPOST_CONTROLDB_URL); empty with --runtime local starts one under --state-dir")
	f.StringVar(&opts.ControlDBSecret, "controldb-secret", os.Getenv("OUTPOST_CONTROLDB_SECRET"), "without --controldb-url (default $OUTPOST_CONTROLDB_SECRET): the Secret and Service of the chart's controldb in --controller-namespace; the Secret is created with fresh passwords if missing")
	f.StringVar(&opts.Namespace, "controller-namespace", kubesource.ControllerNamespace(), "the controller's namespace, where the usage signing key Secret is kept (default $POD_NAMESPACE or the pod's own)")
	f.IntVar(&opts.FirstPort, "first-port", 5432, "lowest TCP port given to a local instance")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := ctrlconfig.GetConfig()
		if err != nil {
			return nil, fmt.Errorf("no Kubernetes API to talk to (set --kubeconfig): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

func newInstanceCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "instance", Short: "Commands that run inside an instance pod"}
	var opts instancemanager.Options
	var logLevel string
	run := &cobra.Command{
		Use:   "run",
		Short: "Run the instance manager: initdb on first start, supervise postgres, serve health and metrics",
		Long: `The entrypoint of an instance pod. Reads the instance's configuration from
--config (its ConfigMap), the passwords from $` + instancemanager.EnvSuperuserPassword + ` and
$` + instancemanager.EnvAppPassword + ` (its Secrets), its certificate from --tls-dir, and runs
postgres with TLS until SIGTERM,
then shuts it down cleanly. /livez, /readyz and /metrics are served on --http-addr,
and POST /backup, with the bearer token $` + instancemanager.EnvBackupToken + `, takes a base backup.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(cmd, logLevel)
			if err != nil {
				return err
			}
			opts.Log = log
			opts.SuperuserPassword = os.Getenv(instancemanager.EnvSuperuserPassword)
			opts.AppPassword = os.Getenv(instancemanager.EnvAppPassword)
			opts.BackupToken = os.Getenv(instancemanager.EnvBackupToken)
			m, err := instancemanager.New(opts)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return m.Run(ctx)
		},
	}
	f := run.Flags()
	f.StringVar(&opts.DataDir, "data-dir", "/var/lib/postgresql/data/pgdata", "PostgreSQL data directory")
	f.StringVar(&opts.ConfigFile, "config", "/etc/outpost/"+instancemanager.ConfigFileName, "instance configuration (the mounted ConfigMap)")
	f.StringVar(&opts.ListenAddress, "listen-address", "0.0.0.0", "address postgres listens on")
	f.StringVar(&opts.HTTPAddr, "http-addr", ":8008", "address of /livez, /readyz and /metrics")
	f.StringVar(&opts.TLSDir, "tls-dir", "/etc/outpost-tls", "the instance's TLS Secret, mounted: tls.crt, tls.key and the site CA's ca.crt")
	f.StringVar(&opts.SocketDir, "socket-dir", "/var/run/postgresql", "directory of postgres' Unix socket, where the superuser connects")
	f.DurationVar(&opts.ReloadInterval, "reload-interval", 10*time.Second, "how often the configuration file is read again")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.AddCommand(run)
	return cmd
}
