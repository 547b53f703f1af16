package harness

import (
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
	Tool(tb, "kube-apiserver")
	Tool(tb, "etcd")
	env := &envtest.Environment{
		BinaryAssetsDirectory: ToolsBin(),
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "charts", "outpost", "crds")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		tb.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	tb.Cleanup(func() {
		if err := env.Stop(); err != nil {
			tb.Errorf("stop kube-apiserver and etcd: %v", err)
		}
	})

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		tb.Fatal(err)
	}
	if err := outpostv1.AddToScheme(scheme); err != nil {
		tb.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		tb.Fatalf("client: %v", err)
	}

	user, err := env.AddUser(envtest.User{Name: "outpost-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		tb.Fatalf("add admin user: %v", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		tb.Fatalf("kubeconfig: %v", err)
	}
	path := filepath.Join(TempDir(tb), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		tb.Fatalf("kubeconfig: %v", err)
	}
	return &APIServer{Config: cfg, Client: c, Kubeconfig: path}
}
