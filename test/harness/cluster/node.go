package cluster

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/outpostdata/outpost/test/harness"
)

// NodeName is the one node's name.
const NodeName = "outpost-node"

const clusterDomain = "cluster.local"

// kubeletConfig is the KubeletConfiguration. Each setting that is not a
// default is needed here:
//   - failCgroupV1 false: this machine has cgroup v1, which kubelet 1.36
//     refuses otherwise; cgroupDriver cgroupfs, as there is no systemd.
//   - cgroupRoot: the pods' cgroups under a tree of this run's, which
//     teardown removes.
//   - evictionHard on memory only (the thresholds left out are off) and
//     image GC at 100%: there is no registry to pull an evicted or
//     collected image from, and the disk is shared with other work.
//   - x509 client CA and no anonymous access: only the apiserver (kubectl
//     exec and logs) talks to kubelet.
func kubeletConfig(n *network, c *certs, containerdSocket, cgroupRoot, resolvConf string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %s
containerRuntimeEndpoint: unix://%s
address: %s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %s}
authorization:
  mode: AlwaysAllow
clusterDomain: %s
clusterDNS: [%s]
resolvConf: %s
podCIDR: %s
evictionHard:
  memory.available: 100Mi
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
failSwapOn: false
serializeImagePulls: false
`, cgroupRoot, containerdSocket, n.NodeIP, c.KubeletCert, c.KubeletKey, c.CAFile,
		clusterDomain, n.NodeIP, resolvConf, n.PodCIDR)
}

func (cl *Cluster) startKubelet() error {
	bin, err := harness.ToolPath("kubelet")
	if err != nil {
		return err
	}
	// Pods get CoreDNS (clusterDNS) and no upstream: nothing outside the
	// cluster is reachable from the namespace anyway.
	resolvConf := filepath.Join(cl.Dir, "resolv.conf")
	if err := os.WriteFile(resolvConf, []byte("options ndots:5\n"), 0o644); err != nil {
		return err
	}
	config := filepath.Join(cl.Dir, "kubelet.yaml")
	if err := os.WriteFile(config, []byte(kubeletConfig(cl.net, cl.certs, cl.containerd.Socket, cl.cgroups.root, resolvConf)), 0o644); err != nil {
		return err
	}
	cl.kubelet, err = harness.StartProcess("kubelet", cl.Dir, cl.net.Command(bin,
		"--config="+config,
		"--kubeconfig="+cl.cp.KubeletKubeconfig,
		"--root-dir="+filepath.Join(cl.Dir, "kubelet"),
		"--hostname-override="+NodeName,
		"--node-ip="+cl.net.NodeIP.String(),
	))
	return err
}

// kubeProxyConfig runs kube-proxy in iptables mode inside the namespace.
// The conntrack settings at 0 leave the kernel's values alone: some are
// global to the machine.
func kubeProxyConfig(n *network, kubeconfig string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
mode: iptables
hostnameOverride: %s
clusterCIDR: %s
bindAddress: %s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, kubeconfig, NodeName, n.PodCIDR, n.NodeIP)
}

func (cl *Cluster) startKubeProxy() error {
	bin, err := harness.ToolPath("kube-proxy")
	if err != nil {
		return err
	}
	config := filepath.Join(cl.Dir, "kube-proxy.yaml")
	if err := os.WriteFile(config, []byte(kubeProxyConfig(cl.net, cl.cp.ComponentKubeconfig)), 0o644); err != nil {
		return err
	}
	cl.kubeProxy, err = harness.StartProcess("kube-proxy", cl.Dir, cl.net.Command(bin, "--config="+config))
	return err
}
