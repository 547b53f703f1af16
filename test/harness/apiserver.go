package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// APIServer is a real kube-apiserver with etcd, started by envtest, with
// Outpost's CRDs from charts/outpost/crds installed.
type APIServer struct {
	Config *rest.Config
	// Client knows the built-in kinds and Outpost's.
	Client client.Client
	// Kubeconfig is a kubeconfig file with admin rights, for kubectl and helm.
	Kubeconfig string
}

// StartAPIServer starts kube-apiserver and etcd on loopback, installs the
// CRDs, and stops both when the test ends.
func StartAPIServer(tb testing.TB) *APIServer {
	tb.Helper()
	env, err := APIServerEnvironment()
	if err != nil {
		tb.Fatal(err)
	}
	env.CRDDirectoryPaths = []string{filepath.Join(RepoRoot(), "charts", "outpost", "crds")}
	env.ErrorIfCRDPathMissing = true
	cfg, err := env.Start()
	if err != nil {
		tb.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	tb.Cleanup(func() {
		if err := env.Stop(); err != nil {
			tb.Errorf("stop kube-apiserver and etcd: %v", err)
		}
	})
	c, err := NewClient(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(TempDir(tb), "kubeconfig")
	if err := WriteKubeconfig(env, envtest.User{Name: "outpost-test-admin", Groups: []string{"system:masters"}}, path); err != nil {
		tb.Fatal(err)
	}
	return &APIServer{Config: cfg, Client: c, Kubeconfig: path}
}

// APIServerEnvironment is the envtest environment StartAPIServer starts,
// not started yet: etcd and kube-apiserver from ToolsBin, or an error
// naming the missing one. The cluster harness adds its flags to it.
func APIServerEnvironment() (*envtest.Environment, error) {
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if _, err := ToolPath(name); err != nil {
			return nil, err
		}
	}
	return &envtest.Environment{BinaryAssetsDirectory: ToolsBin()}, nil
}

// NewClient returns a client that knows the built-in kinds and Outpost's.
func NewClient(cfg *rest.Config) (client.Client, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := outpostv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return c, nil
}

// WriteKubeconfig gives user a client certificate of a started
// environment and writes a kubeconfig for it to path (context "envtest").
func WriteKubeconfig(env *envtest.Environment, user envtest.User, path string) error {
	u, err := env.AddUser(user, nil)
	if err != nil {
		return fmt.Errorf("add user %s: %w", user.Name, err)
	}
	kubeconfig, err := u.KubeConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig of %s: %w", user.Name, err)
	}
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("kubeconfig of %s: %w", user.Name, err)
	}
	return nil
}
