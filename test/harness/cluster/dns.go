package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpostdata/outpost/test/harness"
)

// CoreDNS runs as a process in the node's namespace (not as a pod, which
// would need an image), listening on the node's address, which kubelet
// gives pods as their nameserver. It answers for cluster.local from the
// apiserver and for nothing else: nothing outside is reachable anyway.
func corefile(n *network, kubeconfig string) string {
	return fmt.Sprintf(`%s:53 in-addr.arpa:53 {
    bind %s
    errors
    kubernetes %s in-addr.arpa {
        kubeconfig %s envtest
        pods insecure
    }
    cache 5
    ready 127.0.0.1:8181
    health 127.0.0.1:8180
}
`, clusterDomain, n.NodeIP, clusterDomain, kubeconfig)
}

func (cl *Cluster) startCoreDNS() error {
	bin, err := harness.ToolPath("coredns")
	if err != nil {
		return err
	}
	path := filepath.Join(cl.Dir, "Corefile")
	if err := os.WriteFile(path, []byte(corefile(cl.net, cl.cp.ComponentKubeconfig)), 0o644); err != nil {
		return err
	}
	cl.coredns, err = harness.StartProcess("coredns", cl.Dir, cl.net.Command(bin, "-conf", path))
	return err
}

// Resolver asks the cluster's DNS, from the host: for a test to resolve a
// Service's name (db.default.svc) as a pod would, and so verify its
// certificate by that name.
func (cl *Cluster) Resolver() *net.Resolver {
	addr := net.JoinHostPort(cl.net.NodeIP.String(), "53")
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}

// LookupHost resolves a name the way a pod does: names ending in .svc get
// the cluster domain (a pod's resolv.conf search list does that).
func (cl *Cluster) LookupHost(ctx context.Context, host string) ([]string, error) {
	if strings.HasSuffix(host, ".svc") {
		host += "." + clusterDomain
	}
	return cl.Resolver().LookupHost(ctx, host)
}

// waitDNS waits until CoreDNS answers for the kubernetes Service.
func (cl *Cluster) waitDNS(ctx context.Context) error {
	for {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		addrs, err := cl.LookupHost(qctx, "kubernetes.default.svc")
		cancel()
		if err == nil && len(addrs) > 0 {
			return nil
		}
		if cl.coredns.Exited() {
			return fmt.Errorf("coredns exited; last log lines:\n%s", cl.coredns.LogTail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("coredns does not answer for kubernetes.default.svc: %v; last log lines:\n%s", err, cl.coredns.LogTail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
