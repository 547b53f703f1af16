package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outpostdata/outpost/test/harness"
)

// Cluster is a running one-node cluster.
type Cluster struct {
	// Kubeconfig is a cluster-admin kubeconfig for kubectl and helm.
	Kubeconfig string
	Config     *rest.Config
	// Client knows the built-in kinds and Outpost's.
	Client client.Client
	// Dir holds every file of this run, and each process's log
	// (<name>.log): containerd, kubelet, kube-proxy, coredns,
	// kube-controller-manager, kube-scheduler.
	Dir string
	// CAFile is the cluster CA, which signs the apiserver's certificate.
	CAFile string
	// Started is how long Start took, up to a Ready node with DNS,
	// Services and a default ServiceAccount; NodeReady how long until the
	// node was Ready; Imported how long importing the images took.
	Started, NodeReady, Imported time.Duration

	net        *network
	certs      *certs
	cgroups    *cgroups
	containerd *containerd
	cp         *controlPlane
	hostFwd    string
	// Processes this run started, in start order.
	controllerManager, scheduler, kubelet, kubeProxy, coredns *harness.Process
}

// Options of Start.
type Options struct {
	// Images are docker-archive or OCI tarballs to import into the node's
	// containerd; pods name them with imagePullPolicy Never.
	Images []string
}

// Start brings up the cluster and returns once the node is Ready. On an
// error it has already undone what it did.
func Start(ctx context.Context, opts Options) (cl *Cluster, err error) {
	begin := time.Now()
	if err := Check(); err != nil {
		return nil, fmt.Errorf("the test cluster cannot run here:\n%w", err)
	}
	cl = &Cluster{}
	defer func() {
		if err != nil {
			err = errors.Join(err, cl.Stop())
			cl = nil
		}
	}()
	if cl.hostFwd, err = hostIPForward(); err != nil {
		return cl, err
	}
	if cl.Dir, err = os.MkdirTemp("", "outpost-cluster-"); err != nil {
		return cl, err
	}
	if err := os.Chmod(cl.Dir, 0o755); err != nil {
		return cl, err
	}
	if cl.net, err = createNetwork(); err != nil {
		return cl, err
	}
	pki := filepath.Join(cl.Dir, "pki")
	if err := os.Mkdir(pki, 0o700); err != nil {
		return cl, err
	}
	if cl.certs, err = writeCerts(pki, cl.net, NodeName); err != nil {
		return cl, err
	}
	cl.CAFile = cl.certs.CAFile
	if cl.cgroups, err = createCgroups(cl.net.Name); err != nil {
		return cl, err
	}
	cl.containerd = newContainerd(cl.Dir, cl.net)
	if err := cl.containerd.start(cl.Dir, cl.net); err != nil {
		return cl, err
	}
	// A run that was killed leaves its pods' containers in the cached
	// root; the new kubelet would find them.
	if err := cl.containerd.removeContainers(); err != nil {
		return cl, err
	}
	pause, err := buildPauseImage(cl.Dir)
	if err != nil {
		return cl, err
	}
	imports := time.Now()
	for _, img := range append([]string{pause}, opts.Images...) {
		if err := cl.ImportImage(img); err != nil {
			return cl, err
		}
	}
	cl.Imported = time.Since(imports)
	if cl.cp, err = startControlPlane(cl.Dir, cl.net, cl.certs, NodeName); err != nil {
		return cl, err
	}
	cl.Kubeconfig, cl.Config = cl.cp.AdminKubeconfig, cl.cp.Config
	if cl.Client, err = harness.NewClient(cl.Config); err != nil {
		return cl, err
	}
	if err := cl.startComponents(); err != nil {
		return cl, err
	}
	if err := cl.createStorage(ctx); err != nil {
		return cl, err
	}
	if err := cl.waitReady(ctx, begin); err != nil {
		return cl, err
	}
	if fwd, err := hostIPForward(); err != nil || fwd != cl.hostFwd {
		return cl, fmt.Errorf("the host's net.ipv4.ip_forward changed from %s to %s during the cluster's start (%v): something ran outside the node's network namespace", cl.hostFwd, fwd, err)
	}
	cl.Started = time.Since(begin)
	return cl, nil
}

func (cl *Cluster) startComponents() error {
	kcm, err := harness.ToolPath("kube-controller-manager")
	if err != nil {
		return err
	}
	sched, err := harness.ToolPath("kube-scheduler")
	if err != nil {
		return err
	}
	if cl.controllerManager, err = harness.StartProcess("kube-controller-manager", cl.Dir, controllerManagerCommand(kcm, cl.cp, cl.certs, cl.net)); err != nil {
		return err
	}
	if cl.scheduler, err = harness.StartProcess("kube-scheduler", cl.Dir, schedulerCommand(sched, cl.cp)); err != nil {
		return err
	}
	if err := cl.startKubelet(); err != nil {
		return err
	}
	if err := cl.startKubeProxy(); err != nil {
		return err
	}
	return cl.startCoreDNS()
}

// ImportImage loads a docker-archive or OCI tarball into the node.
func (cl *Cluster) ImportImage(path string) error { return cl.containerd.importImage(path) }

// ContainerdAddress is the node's containerd socket, for `ctr -a` and
// `outpost bundle import --containerd-address`.
func (cl *Cluster) ContainerdAddress() string { return cl.containerd.Socket }

// TagImage names an imported image src also dst.
func (cl *Cluster) TagImage(src, dst string) error { return cl.containerd.tag(src, dst) }

// waitReady waits for what a test needs: the node Ready, the default
// ServiceAccount (the controller-manager works), the kubernetes Service
// answering through kube-proxy, and CoreDNS.
func (cl *Cluster) waitReady(ctx context.Context, begin time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	steps := []struct {
		what  string
		check func() error
	}{
		{"node Ready", cl.nodeReady},
		{"the default ServiceAccount", func() error {
			return cl.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "default"}, &corev1.ServiceAccount{})
		}},
		{"the kubernetes Service through kube-proxy", func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(cl.net.KubernetesServiceIP().String(), "443"), time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}},
	}
	for _, s := range steps {
		for {
			err := s.check()
			if err == nil {
				if s.what == "node Ready" {
					cl.NodeReady = time.Since(begin)
				}
				break
			}
			if p := cl.exitedProcess(); p != nil {
				return fmt.Errorf("%s exited while waiting for %s; last log lines:\n%s", p.Name, s.what, p.LogTail())
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s: %v (logs in %s)", s.what, err, cl.Dir)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return cl.waitDNS(ctx)
}

func (cl *Cluster) nodeReady() error {
	var node corev1.Node
	if err := cl.Client.Get(context.Background(), client.ObjectKey{Name: NodeName}, &node); err != nil {
		return err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s not Ready: %s", NodeName, c.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", NodeName)
}

func (cl *Cluster) processes() []*harness.Process {
	var ps []*harness.Process
	for _, p := range []*harness.Process{cl.controllerManager, cl.scheduler, cl.kubelet, cl.kubeProxy, cl.coredns} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	if cl.containerd != nil && cl.containerd.proc != nil {
		ps = append(ps, cl.containerd.proc)
	}
	return ps
}

func (cl *Cluster) exitedProcess() *harness.Process {
	for _, p := range cl.processes() {
		if p.Exited() {
			return p
		}
	}
	return nil
}

// NodeIP is the node's address (kubelet, CoreDNS), reachable from the host.
func (cl *Cluster) NodeIP() net.IP { return cl.net.NodeIP }

// ServiceCIDR is the range of the Services' ClusterIPs.
func (cl *Cluster) ServiceCIDR() *net.IPNet { return cl.net.ServiceCIDR }

// HostIP is the host's end of the veth: the apiserver's address, and
// where a server on the host is reachable from pods.
func (cl *Cluster) HostIP() net.IP { return cl.net.HostIP }
