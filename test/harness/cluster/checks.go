package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/outpostdata/outpost/test/harness"
)

// Tools built by scripts/install-deps.sh into harness.ToolsBin. The
// Kubernetes components are one multi-call binary `kube` with symlinks.
var tools = []string{
	"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
	"kubelet", "kube-proxy", "kubectl", "coredns", "helm",
}

// System binaries from Debian packages (containerd, runc,
// containernetworking-plugins, iptables, iproute2, util-linux).
var systemBinaries = []string{
	"/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2", "/usr/bin/ctr",
	"/usr/sbin/runc", "/usr/bin/nsenter", "/usr/sbin/ip",
	"/usr/sbin/iptables", "/usr/sbin/iptables-save", "/usr/sbin/iptables-restore",
}

// cniDir holds Debian's CNI plugins; the node uses these.
const cniDir = "/usr/lib/cni"

var cniPlugins = []string{"bridge", "host-local", "loopback", "portmap"}

// The cgroup v1 controllers kubelet needs (cgroupfs driver, no systemd).
var cgroupControllers = []string{"cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer"}

// Check reports every binary and kernel feature the cluster needs that is
// missing, with what installs it, so a test run fails at once and says
// why, never skips.
func Check() error {
	var errs []error
	for _, name := range tools {
		if _, err := harness.ToolPath(name); err != nil {
			errs = append(errs, err)
		}
	}
	for _, path := range systemBinaries {
		if _, err := exec.LookPath(path); err != nil {
			errs = append(errs, fmt.Errorf("%s not found: run `make deps` (apt-get install containerd runc iptables iproute2 util-linux)", path))
		}
	}
	for _, p := range cniPlugins {
		if _, err := os.Stat(filepath.Join(cniDir, p)); err != nil {
			errs = append(errs, fmt.Errorf("CNI plugin %s not found in %s: run `make deps` (apt-get install containernetworking-plugins)", p, cniDir))
		}
	}
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("the cluster needs root: network namespaces, mounts and cgroups"))
	}
	if fs, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(fs), "\toverlay\n") {
		errs = append(errs, errors.New("the kernel has no overlay filesystem, which containerd's snapshotter needs"))
	}
	for _, c := range cgroupControllers {
		if _, err := os.Stat(filepath.Join(cgroupV1, c, "cgroup.procs")); err != nil {
			errs = append(errs, fmt.Errorf("cgroup v1 controller %s is not mounted at %s/%s, which kubelet (cgroupfs driver) needs", c, cgroupV1, c))
		}
	}
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		errs = append(errs, errors.New("the kernel has no br_netfilter (/proc/sys/net/bridge): Services between pods on the bridge need it"))
	}
	return errors.Join(errs...)
}
