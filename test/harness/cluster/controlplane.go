package cluster

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/outpostdata/outpost/test/harness"
)

// controlPlane is etcd and kube-apiserver (envtest, as package harness
// starts them for envtest suites), with the flags of a real cluster, and
// kube-controller-manager and kube-scheduler. All run on the host; the
// apiserver listens on the veth's host end only, where the node and the
// pods (through the kubernetes Service) reach it.
type controlPlane struct {
	env    *envtest.Environment
	Config *rest.Config
	// AdminKubeconfig is for users: kubectl, helm, tests.
	AdminKubeconfig string
	// ComponentKubeconfig is for the node's components; kubelet has its own.
	ComponentKubeconfig string
	KubeletKubeconfig   string
}

func startControlPlane(dir string, n *network, c *certs, nodeName string) (*controlPlane, error) {
	env, err := harness.APIServerEnvironment()
	if err != nil {
		return nil, err
	}
	port, err := freePort(n.HostIP)
	if err != nil {
		return nil, err
	}
	api := env.ControlPlane.GetAPIServer()
	api.CertDir = c.Dir
	api.SecureServing.Address = n.HostIP.String()
	api.SecureServing.Port = strconv.Itoa(port)
	api.SecureServing.CA = c.CAPEM
	args := api.Configure()
	args.Set("service-cluster-ip-range", n.ServiceCIDR.String())
	args.Set("advertise-address", n.HostIP.String())
	// envtest turns the ServiceAccount admission plugin off, as no
	// controller-manager makes the default ServiceAccount there; here one
	// does, and pods need their token mounted.
	args.Disable("disable-admission-plugins")
	// The node's name resolves nowhere; its address does.
	args.Set("kubelet-preferred-address-types", "InternalIP")
	args.Set("kubelet-client-certificate", c.KubeletClientCert)
	args.Set("kubelet-client-key", c.KubeletClientKey)
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver and etcd: %w", err)
	}
	cp := &controlPlane{env: env, Config: cfg,
		AdminKubeconfig:     filepath.Join(dir, "admin.kubeconfig"),
		ComponentKubeconfig: filepath.Join(dir, "components.kubeconfig"),
		KubeletKubeconfig:   filepath.Join(dir, "kubelet.kubeconfig"),
	}
	// Every component is cluster-admin: this is a test cluster with one
	// user, and RBAC for each component is not what is tested here.
	masters := []string{"system:masters"}
	for path, user := range map[string]envtest.User{
		cp.AdminKubeconfig:     {Name: "outpost-test-admin", Groups: masters},
		cp.ComponentKubeconfig: {Name: "outpost-test-components", Groups: masters},
		cp.KubeletKubeconfig:   {Name: "system:node:" + nodeName, Groups: append([]string{"system:nodes"}, masters...)},
	} {
		if err := harness.WriteKubeconfig(env, user, path); err != nil {
			return cp, err
		}
	}
	return cp, nil
}

// controllerManagerCommand runs kube-controller-manager on the host. It
// signs ServiceAccount tokens with the apiserver's key and publishes the
// cluster CA (kube-root-ca.crt) that pods verify the apiserver with.
func controllerManagerCommand(bin string, cp *controlPlane, c *certs, n *network) *exec.Cmd {
	return exec.Command(bin,
		"--kubeconfig="+cp.ComponentKubeconfig,
		"--secure-port=0",
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file="+filepath.Join(c.Dir, saKeyFile),
		"--root-ca-file="+c.CAFile,
		"--service-cluster-ip-range="+n.ServiceCIDR.String(),
		"--cluster-cidr="+n.PodCIDR.String(),
	)
}

// schedulerCommand runs kube-scheduler on the host.
func schedulerCommand(bin string, cp *controlPlane) *exec.Cmd {
	return exec.Command(bin,
		"--kubeconfig="+cp.ComponentKubeconfig,
		"--secure-port=0",
		"--leader-elect=false",
	)
}

// freePort returns a TCP port on ip that was free a moment ago.
func freePort(ip net.IP) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return 0, fmt.Errorf("free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
